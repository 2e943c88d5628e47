import asyncio
import shutil
from pathlib import Path

import pytest

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"

UNIT_TIMEOUT_SECS = 60


@pytest.mark.browser
async def test_chat_two_users_live_history_and_offline_catch_up(browser_server, run_e2e):
    output = await run_e2e("chat.e2e.mjs", browser_server)
    assert output.rstrip().lower().endswith("pass"), output


async def test_socket_client_resume_gaps_resets_and_retries():
    """The browser's WebSocket client against a scripted socket (frontend/tests/socket.test.mjs): the
    lost events, resets and drops mid-request that the browser test cannot bring about."""
    node = shutil.which("node")
    assert node, "node is not installed"
    process = await asyncio.create_subprocess_exec(
        node, "--test", "tests/", cwd=FRONTEND,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), UNIT_TIMEOUT_SECS)
    assert process.returncode == 0, output.decode(errors="replace")
