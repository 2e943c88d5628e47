import pytest

pytestmark = pytest.mark.browser


async def test_chat_two_users_live_history_and_offline_catch_up(browser_server, run_e2e):
    output = await run_e2e("chat.e2e.mjs", browser_server)
    assert output.rstrip().lower().endswith("pass"), output
