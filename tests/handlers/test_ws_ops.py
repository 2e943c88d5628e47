"""Socket ops registered by features: the schema refuses bad frames with the field named."""

from tests.support.ws import WsClient


async def test_ping_echo_answers_with_the_text_and_names_a_bad_field(server):
    ws = await WsClient.connect(server)
    try:
        assert (await ws.request("ping.echo", text="héllo"))["echo"] == "héllo"
        for fields in ({}, {"text": 5}, {"text": "x" * 201}, {"text": "hi", "extra": 1}):
            refused = await ws.request("ping.echo", **fields)
            assert refused["type"] == "error" and refused["code"] == "invalid_input", refused
            assert refused["data"]["field"] in ("text", "extra"), refused
        assert (await ws.request("ping"))["type"] == "pong"  # the socket goes on
    finally:
        ws.close()
