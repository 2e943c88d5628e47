import pytest

pytestmark = pytest.mark.browser


async def test_register_edit_profile_log_out_and_in(browser_server, run_e2e):
    output = await run_e2e("auth.e2e.mjs", browser_server)
    assert "ok" in output.lower()
