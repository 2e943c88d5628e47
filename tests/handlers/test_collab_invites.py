"""Collab invitations expire, count their uses, can be revoked, and a removed member cannot walk back in."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from server.store.collab_tables import CollabInvite
from tests.conftest import make_settings
from tests.handlers.test_collab import new_session
from tests.support.client import ApiClient, error_code
from tests.support.server import running_server


async def make_invite(owner: ApiClient, session_id: str, **body) -> dict:
    response = await owner.post(f"/api/collab/sessions/{session_id}/invites", {"role": "editor", **body})
    assert response.status_code == 201, response.text
    return response.json()["invite"]


async def accept(guest: ApiClient, invite: dict):
    return await guest.post(f"/api/collab/invites/{invite['token']}/accept")


async def test_invitations_expire_run_out_and_can_be_revoked(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", collab_invite_limit=4)
    async with running_server(settings) as (base_url, runtime):
        alice, bob, carol, dave = (ApiClient(base_url) for _ in range(4))
        try:
            for client, name in ((alice, "alice"), (bob, "bob"), (carol, "carol"), (dave, "dave")):
                await client.register(name)
            sid = await new_session(alice)
            once = await make_invite(alice, sid, max_uses=1)
            assert once["max_uses"] == 1 and once["uses"] == 0 and once["expires_at"]
            assert (await accept(bob, once)).status_code == 200
            assert (await accept(bob, once)).status_code == 200  # a member clicking again uses up nothing
            used_up = await accept(carol, once)
            assert used_up.status_code == 410 and error_code(used_up) == "invite_used_up"

            short = await make_invite(alice, sid, expires_in_secs=60)
            async with runtime.db() as db:  # an hour later
                await db.execute(update(CollabInvite).where(CollabInvite.token_hash == short["id"])
                                 .values(expires_at=dt.datetime(2000, 1, 1)))
                await db.commit()
            expired = await accept(carol, short)
            assert expired.status_code == 410 and error_code(expired) == "invite_expired"

            open_link = await make_invite(alice, sid, role="viewer")
            listed = (await alice.get(f"/api/collab/sessions/{sid}/invites")).json()["invites"]
            assert [i["id"] for i in listed] == [open_link["id"]] and "token" not in listed[0]
            assert (await bob.get(f"/api/collab/sessions/{sid}/invites")).status_code == 403
            assert (await bob.delete(f"/api/collab/sessions/{sid}/invites/{open_link['id']}")).status_code == 403
            assert (await alice.delete(f"/api/collab/sessions/{sid}/invites/{open_link['id']}")).status_code == 204
            revoked = await accept(carol, open_link)
            assert revoked.status_code == 410 and error_code(revoked) == "invite_expired"
            assert (await alice.get(f"/api/collab/sessions/{sid}/invites")).json()["invites"] == []

            for body in ({"expires_in_secs": 5}, {"expires_in_secs": 10**9}, {"max_uses": 0}, {"max_uses": "many"}):
                bad = await alice.post(f"/api/collab/sessions/{sid}/invites", {"role": "editor", **body})
                assert bad.status_code == 400, body
            await make_invite(alice, sid)
            throttled = await alice.post(f"/api/collab/sessions/{sid}/invites", {"role": "editor"})
            assert throttled.status_code == 429 and error_code(throttled) == "rate_limited"
        finally:
            for client in (alice, bob, carol, dave):
                await client.aclose()


async def test_a_removed_member_cannot_accept_the_same_link_again(backend, tmp_path):
    async with running_server(make_settings(backend, tmp_path / "data")) as (base_url, _):
        alice, bob, carol = (ApiClient(base_url) for _ in range(3))
        try:
            for client, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
                await client.register(name)
            sid = await new_session(alice)
            shared = await make_invite(alice, sid)  # one link for the whole team
            assert (await accept(bob, shared)).status_code == 200
            bob_id = (await bob.get("/api/me")).json()["user"]["id"]
            assert (await alice.delete(f"/api/collab/sessions/{sid}/members/{bob_id}")).status_code == 204
            again = await accept(bob, shared)
            assert again.status_code == 410 and error_code(again) == "invite_revoked"
            assert (await bob.get(f"/api/collab/sessions/{sid}")).status_code == 404
            assert (await accept(carol, shared)).status_code == 200  # the others' link still works
            # The owner may deliberately invite them back with a new link.
            assert (await accept(bob, await make_invite(alice, sid))).status_code == 200
        finally:
            for client in (alice, bob, carol):
                await client.aclose()
