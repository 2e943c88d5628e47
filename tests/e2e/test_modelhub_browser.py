import pytest

pytestmark = pytest.mark.browser


async def test_modelhub_upload_find_with_enter_and_download(browser_server, run_e2e):
    output = await run_e2e("modelhub.e2e.mjs", browser_server)
    assert output.rstrip().lower().endswith("pass"), output
