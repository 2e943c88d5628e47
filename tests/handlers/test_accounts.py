"""Accounts over real HTTP, on both backends."""

import io

import pytest
from PIL import Image

from tests.support.client import error_code

PASSWORD = "correct horse battery"


def png_bytes(size=(300, 200), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


async def test_register_signs_in_and_me_answers(api):
    user = await api.register("Alice", email="alice@example.com")
    assert user["username"] == "alice" and user["email"] == "alice@example.com"
    me = await api.get("/api/me")
    assert me.status_code == 200 and me.json()["user"]["id"] == user["id"]
    cookie_header = [h for h in me.headers.get_list("set-cookie")] + [
        h for h in (await api.login("alice")).headers.get_list("set-cookie")
    ]
    session_cookie = next(h for h in cookie_header if h.startswith("va_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie


async def test_session_id_is_new_at_every_login_and_logout_revokes_it(api, new_client):
    await api.register("bob")
    first = api.http.cookies["va_session"]
    assert (await api.login("bob")).status_code == 200
    second = api.http.cookies["va_session"]
    assert first != second
    # The old cookie no longer signs anyone in: log-in replaced that session.
    stale = new_client()
    stale.http.cookies.set("va_session", first)
    assert (await stale.get("/api/me")).status_code == 401

    assert (await api.post("/api/auth/logout")).status_code == 204
    replay = new_client()
    replay.http.cookies.set("va_session", second)
    assert (await replay.get("/api/me")).status_code == 401


async def test_public_profile_and_profile_edit(api, new_client):
    await api.register("carol")
    response = await api.patch("/api/me", {"display_name": "Carol 🎨", "bio": "我画猫。\nLine two."})
    assert response.status_code == 200, response.text
    public = await new_client().get("/api/users/CAROL")
    assert public.status_code == 200
    body = public.json()["user"]
    assert body["display_name"] == "Carol 🎨" and body["bio"] == "我画猫。\nLine two."
    assert "email" not in body
    assert (await api.get("/api/users/nobody")).status_code == 404


async def test_avatar_is_verified_and_reencoded(api):
    await api.register("dora")
    response = await api.put("/api/me/avatar", content=png_bytes(), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    url = response.json()["user"]["avatar_url"]
    image = await api.get(url)
    assert image.headers["content-type"] == "image/webp"
    assert "immutable" in image.headers["cache-control"]
    assert Image.open(io.BytesIO(image.content)).size == (256, 256)
    again = await api.get(url, headers={"If-None-Match": image.headers["etag"]})
    assert again.status_code == 304


async def test_bad_avatars_are_refused_and_change_nothing(api, settings):
    await api.register("eve")
    not_image = await api.put("/api/me/avatar", content=b"GIF89a but not really", headers={"Content-Type": "image/gif"})
    assert not_image.status_code == 415 and error_code(not_image) == "unsupported_media_type"
    wrong_type = await api.put("/api/me/avatar", content=png_bytes(), headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    truncated = await api.put("/api/me/avatar", content=png_bytes()[:200], headers={"Content-Type": "image/png"})
    assert truncated.status_code == 400 and error_code(truncated) == "invalid_image"
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")
    refused = await api.put("/api/me/avatar", content=bomb.getvalue(), headers={"Content-Type": "image/png"})
    assert refused.status_code == 400 and error_code(refused) == "image_too_large"
    huge = await api.put("/api/me/avatar", content=b"\0" * (settings.max_avatar_bytes + 1),
                         headers={"Content-Type": "image/png"})
    assert huge.status_code == 413
    me = (await api.get("/api/me")).json()["user"]
    assert me["avatar_url"] is None


async def test_bad_input_answers_clearly(api, settings):
    await api.register("frank")
    duplicate = await api.post("/api/auth/register", {"username": "FRANK", "password": PASSWORD})
    assert duplicate.status_code == 409 and error_code(duplicate) == "username_taken"
    for password in ("", "short"):
        weak = await api.post("/api/auth/register", {"username": "gina", "password": password})
        assert weak.status_code == 400 and error_code(weak) == "weak_password"
    too_long = await api.post("/api/auth/register", {"username": "gina", "password": "p" * 10_000})
    assert too_long.status_code == 400 and error_code(too_long) == "password_too_long"
    bad_name = await api.post("/api/auth/register", {"username": "no spaces!", "password": PASSWORD})
    assert bad_name.status_code == 400 and error_code(bad_name) == "invalid_username"
    malformed = await api.post("/api/auth/register", content=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and error_code(malformed) == "invalid_json"
    wrong_type = await api.post("/api/auth/register", {"username": ["x"], "password": PASSWORD})
    assert wrong_type.status_code == 400 and "username" in wrong_type.json()["error"]["message"]
    oversized = await api.post("/api/auth/register", content=b"x" * (settings.max_json_body_bytes + 1),
                               headers={"Content-Type": "application/json"})
    assert oversized.status_code == 413 and error_code(oversized) == "payload_too_large"
    unknown = await api.get("/api/does/not/exist")
    assert unknown.status_code == 404 and error_code(unknown) == "not_found"
    no_xsrf = await api.post("/api/auth/logout", xsrf=False)
    assert no_xsrf.status_code == 403 and error_code(no_xsrf) == "xsrf"
    wrong_method = await api.request("PUT", "/api/auth/login", json={})
    assert wrong_method.status_code == 405 and error_code(wrong_method) == "method_not_allowed"
    # Nothing above changed the account.
    assert (await api.get("/api/me")).json()["user"]["username"] == "frank"
    assert (await api.login("frank")).status_code == 200


async def test_unknown_user_and_wrong_password_look_alike(api):
    await api.register("hank")
    unknown = await api.login("nobody_here", "whatever password")
    wrong = await api.login("hank", "wrong password!")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


async def test_repeated_wrong_passwords_are_throttled(api, new_client, settings):
    await api.register("ivan")
    attacker = new_client()
    statuses = [(await attacker.login("ivan", "bad password")).status_code
                for _ in range(settings.login_account_failures + 1)]
    assert statuses[:-1] == [401] * settings.login_account_failures
    assert statuses[-1] == 429
    throttled = await attacker.login("ivan", PASSWORD)
    assert throttled.status_code == 429 and error_code(throttled) == "rate_limited"
    assert int(throttled.headers["Retry-After"]) >= 1


async def test_password_change_revokes_other_sessions(api, new_client):
    await api.register("judy")
    other = new_client()
    assert (await other.login("judy")).status_code == 200
    wrong = await api.post("/api/me/password", {"current_password": "nope nope", "new_password": "a new password"})
    assert wrong.status_code == 401
    changed = await api.post("/api/me/password", {"current_password": PASSWORD, "new_password": "a new password"})
    assert changed.status_code == 200, changed.text
    assert (await api.get("/api/me")).status_code == 200  # this browser got a fresh session
    assert (await other.get("/api/me")).status_code == 401
    assert (await new_client().login("judy", "a new password")).status_code == 200


async def test_api_tokens_lifecycle(api, new_client):
    await api.register("kate")
    created = await api.post("/api/tokens", {"name": "my script"})
    assert created.status_code == 201
    secret, token = created.json()["token"], created.json()["api_token"]
    assert secret.startswith("va_") and token["prefix"] == secret[:10]
    listed = (await api.get("/api/tokens")).json()["tokens"]
    assert [t["id"] for t in listed] == [token["id"]] and secret not in str(listed)

    script = new_client(token=secret)
    me = await script.get("/api/me")
    assert me.status_code == 200 and me.json()["user"]["username"] == "kate"
    # A bearer request needs no XSRF token.
    edit = await script.patch("/api/me", {"bio": "from a script"}, xsrf=False)
    assert edit.status_code == 200
    # Both credentials see the edit at once: cached principals are dropped on writes.
    assert (await script.get("/api/me")).json()["user"]["bio"] == "from a script"
    assert (await api.get("/api/me")).json()["user"]["bio"] == "from a script"

    assert (await api.delete(f"/api/tokens/{token['id']}")).status_code == 204
    revoked = await script.get("/api/me")
    assert revoked.status_code == 401 and error_code(revoked) == "invalid_token"
    assert (await api.delete(f"/api/tokens/{token['id']}")).status_code == 404


async def test_tokens_of_others_cannot_be_revoked(api, new_client):
    await api.register("leo")
    token_id = (await api.post("/api/tokens", {"name": "t"})).json()["api_token"]["id"]
    mallory = new_client()
    await mallory.register("mallory")
    assert (await mallory.delete(f"/api/tokens/{token_id}")).status_code == 404
    assert len((await api.get("/api/tokens")).json()["tokens"]) == 1


async def test_signed_out_requests_are_refused(api):
    for method, path in (("GET", "/api/me"), ("PATCH", "/api/me"), ("GET", "/api/tokens"), ("POST", "/api/tokens")):
        response = await api.request(method, path, json={})
        assert response.status_code == 401 and error_code(response) == "unauthenticated", (method, path)


@pytest.mark.parametrize("path", ["/api/me", "/api/tokens"])
async def test_garbage_cookie_is_anonymous_not_an_error(api, path):
    api.http.cookies.set("va_session", "forged|value")
    assert (await api.get(path)).status_code == 401
