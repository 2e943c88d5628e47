import pytest

pytestmark = pytest.mark.browser


async def test_register_edit_profile_log_out_and_in(browser_server, run_e2e):
    output = await run_e2e("auth.e2e.mjs", browser_server)
    assert output.rstrip().lower().endswith("pass"), output


async def test_shell_language_theme_tokens_and_errors(browser_server, run_e2e):
    output = await run_e2e("shell.e2e.mjs", browser_server)
    assert output.rstrip().lower().endswith("pass"), output
