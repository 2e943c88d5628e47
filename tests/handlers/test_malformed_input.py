"""Malformed input is a 400 naming the field, never a 500. Ids, cursors and counts must be ASCII digits within
the column's range (Unicode digits that `int` refuses, numbers past BIGINT were 500s), on both backends."""

import pytest

from server.ids import BIGINT_MAX, as_id, parse_id
from server.errors import InvalidInput
from tests.support.client import error_code

PAST_BIGINT = str(BIGINT_MAX + 1)  # 9223372036854775808


def test_parse_id_accepts_ascii_digits_and_json_integers_within_the_range():
    assert parse_id("0", "id") == 0 and parse_id(str(BIGINT_MAX), "id") == BIGINT_MAX and parse_id(7, "id") == 7
    assert parse_id(7.0, "id") == 7  # JSON has one number type
    for bad in ("¹", "٣", "12¹", "", "-1", " 1", "1.0", PAST_BIGINT, "0" * 20, -1, BIGINT_MAX + 1, True, 1.5, None,
                float("inf"), float("nan")):
        assert as_id(bad) is None, bad
        with pytest.raises(InvalidInput, match="`target`"):
            parse_id(bad, "target")


async def test_malformed_ids_are_refused_with_400(api):
    await api.register("mallory")
    cases = [
        ("GET", f"/api/rooms/0/messages?before={PAST_BIGINT}", None, "`before`"),
        ("GET", "/api/rooms/0/messages?before=%C2%B9", None, "`before`"),
        ("POST", "/api/notifications/read", {"ids": [-36893488147419103231]}, "`ids`"),
        ("POST", "/api/notifications/read", {"ids": [int(PAST_BIGINT)]}, "`ids`"),
        ("POST", "/api/reports", {"kind": "post", "target": "¹", "reason": "spam"}, "`target`"),
        ("POST", "/api/reports", {"kind": "message", "target": "²", "reason": "spam"}, "`target`"),
        ("POST", "/api/reports", {"kind": "model", "target": PAST_BIGINT, "reason": "spam"}, "`target`"),
        ("GET", f"/api/notifications?before={PAST_BIGINT}", None, "`before`"),
    ]
    for method, path, body, field in cases:
        response = await api.request(method, path, json=body)
        assert response.status_code == 400, (path, body, response.status_code, response.text)
        assert error_code(response) == "invalid_input" or error_code(response) == "bad_cursor", response.text
        assert field in response.json()["error"]["message"], response.text


async def test_a_job_list_cursor_that_names_no_job_of_mine_is_a_400(api):
    await api.register("mallory")
    for cursor in ("zzz", "0" * 32, "%C2%B9"):
        response = await api.request("GET", f"/api/jobs?mine=1&before={cursor}")
        assert response.status_code == 400 and error_code(response) == "invalid_cursor", (cursor, response.text)
        assert "`before`" in response.json()["error"]["message"]


async def test_a_collab_member_id_past_bigint_is_a_400(api):
    await api.register("owner")
    session = (await api.post("/api/collab/sessions", {"title": "t"})).json()["session"]["id"]
    response = await api.delete(f"/api/collab/sessions/{session}/members/{'9' * 19}")
    assert response.status_code == 400, response.text


async def test_tus_numbers_must_be_ascii_digits(api):
    await api.register("uploader")
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "100",
               "Upload-Metadata": "filename bS5zYWZldGVuc29ycw==,version_id wrk="}  # version_id "¹"
    response = await api.post("/api/hub/uploads", headers=headers)
    assert response.status_code == 400 and "version_id" in response.text, response.text
    response = await api.post("/api/hub/uploads", headers={**headers, "Upload-Length": "²".encode("latin-1")})
    assert response.status_code == 400 and "Upload-Length" in response.text, response.text


async def test_values_of_the_wrong_type_or_form_are_a_400(api):
    """Found by schemathesis: each was a 500 or was accepted."""
    await api.register("trudy")
    response = await api.post("/api/reports", {"kind": {}, "target": "1", "reason": "spam"})
    assert response.status_code == 400 and "`kind`" in response.text, response.text
    response = await api.get("/api/rooms/%C2%84/presence")  # not a room name
    assert response.status_code == 400, response.text
