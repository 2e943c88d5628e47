"""A 405 says which methods the resource has (RFC 9110 requires `Allow`), in the JSON error shape."""

from tests.support.client import error_code


async def test_405_answers_carry_allow(api):
    cases = {
        ("PUT", "/api/auth/login"): {"POST"},
        ("DELETE", "/api/posts"): {"GET", "POST"},
        ("PATCH", "/healthz"): {"GET"},
        ("POST", "/metrics"): {"GET"},
        ("TRACE", "/api/me"): None,  # not a method we serve anywhere: still 405 with Allow
    }
    for (method, path), allowed in cases.items():
        response = await api.request(method, path)
        assert response.status_code == 405, (method, path, response.status_code)
        header = {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}
        assert header, (method, path, "no Allow header")
        assert method not in header
        if allowed is not None:
            assert header == allowed, (method, path, header)
        if path.startswith("/api/"):
            assert error_code(response) == "method_not_allowed"


async def test_a_method_the_handler_lacks_is_405_before_xsrf_or_prepare(api):
    await api.register("nina")
    # No XSRF token: the 405 comes before the XSRF check (a 403 would hide that the method does not exist).
    response = await api.request("POST", "/healthz", xsrf=False)
    assert response.status_code == 405 and response.headers["Allow"] == "GET"
    # The upload handler's prepare() starts an upload; for a method it lacks, it must not run at all.
    response = await api.request("POST", "/api/hub/versions/1/files/x.safetensors", content=b"x")
    assert response.status_code == 405 and response.headers["Allow"] == "PUT", response.text
