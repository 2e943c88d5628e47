"""The y-protocols parser, and the wire format against the browser's own Yjs (run in Node)."""

import json
import shutil
import subprocess

import pytest
from pycrdt import Doc, Map, Text

from server.collab import protocol
from server.collab.documents import snapshot_of, write_snapshot
from server.collab.protocol import Kind, MalformedMessage
from tests.e2e.conftest import ROOT

FRONTEND = ROOT / "frontend"

# Node with the app's own yjs and y-protocols: makes a document with astral-plane characters, edits it at
# UTF-16 positions, and prints y-protocols messages (hex); then applies the update given on stdin.
JS = r"""
const Y = require('yjs')
const encoding = require('lib0/encoding')
const sync = require('y-protocols/sync')
const fromHex = (h) => Uint8Array.from(Buffer.from(h, 'hex'))
const toHex = (u) => Buffer.from(u).toString('hex')
const doc = new Y.Doc()
doc.clientID = 4242  // the same document in both runs
const text = doc.getText('prompt')
text.insert(0, 'a😀b猫')
text.insert(3, 'X')            // UTF-16: after the emoji (2 code units)
text.delete(5, 1)             // removes 猫
doc.getMap('settings').set('steps', 12)
const message = (write) => { const e = encoding.createEncoder(); encoding.writeVarUint(e, 0); write(e); return toHex(encoding.toUint8Array(e)) }
const out = { step1: message((e) => sync.writeSyncStep1(e, doc)), update: message((e) => sync.writeUpdate(e, Y.encodeStateAsUpdate(doc))) }
const input = require('fs').readFileSync(0, 'utf8').trim()
if (input) {
  Y.applyUpdate(doc, fromHex(input))
  out.after = text.toString()
  out.length = text.length
}
console.log(JSON.stringify(out))
"""


def run_js(stdin: str = "") -> dict:
    node = shutil.which("node")
    if node is None or not (FRONTEND / "node_modules" / "yjs").exists():
        pytest.fail("node and frontend/node_modules are needed: run `make frontend`")
    done = subprocess.run([node, "-e", JS], cwd=FRONTEND, input=stdin, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_yjs_messages_parse_and_positions_agree_with_pycrdt():
    js = run_js()
    assert protocol.parse(bytes.fromhex(js["step1"])).kind is Kind.SYNC_STEP1
    update = protocol.parse(bytes.fromhex(js["update"]))
    assert update.kind is Kind.UPDATE
    doc = Doc()
    doc.apply_update(update.payload)
    # Yjs inserted at UTF-16 index 3 and deleted index 5: the same characters land in pycrdt.
    assert str(doc.get("prompt", type=Text)) == "a😀Xb"
    assert doc.get("settings", type=Map)["steps"] == 12
    # The server's whole-text edit (a restore) reads back the same in Yjs, lengths in UTF-16 units.
    before = doc.get_state()
    write_snapshot(doc, {"prompt": "🦊 fox 🌙", "negative_prompt": "", "settings": {"steps": 12}})
    back = run_js(doc.get_update(before).hex())
    assert back["after"] == "🦊 fox 🌙" and back["length"] == len("🦊 fox 🌙".encode("utf-16-le")) // 2
    assert snapshot_of(doc)["prompt"] == "🦊 fox 🌙"


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\x00\x00", b"\x00\x05\x01", b"\x07\x00", b"\x00\x03\x00",
    protocol.encode(Kind.UPDATE, b"\x00\x00") + b"\x00", b"\x00\x00\xff\xff\xff\xff\xff\xff",
])
def test_malformed_messages_are_refused(data):
    with pytest.raises(MalformedMessage):
        protocol.parse(data)


def test_awareness_states_must_be_json_objects_or_null():
    ok = protocol.encode_awareness([protocol.AwarenessEntry(7, 3, b'{"user":{"name":"a"}}'),
                                    protocol.AwarenessEntry(8, 1, b"null")])
    entries = protocol.parse_awareness(ok)
    assert [(e.client_id, e.clock, e.removed) for e in entries] == [(7, 3, False), (8, 1, True)]
    for bad in (b"[1]", b"{", b"\xff"):
        with pytest.raises(MalformedMessage):
            protocol.parse_awareness(protocol.encode_awareness([protocol.AwarenessEntry(1, 1, bad)]))
