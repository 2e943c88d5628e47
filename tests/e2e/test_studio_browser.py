import pytest

pytestmark = pytest.mark.browser


async def test_studio_photo_to_four_styles(browser_server, run_e2e):
    output = await run_e2e("studio.e2e.mjs", browser_server)
    assert output.rstrip().lower().endswith("pass"), output
