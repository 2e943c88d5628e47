"""Log-in, registration and password-change throttles over real HTTP, behind a (pretend) proxy, on both backends."""

from __future__ import annotations

import asyncio
import logging
import uuid

from tests.conftest import make_settings
from tests.support.client import ApiClient, error_code
from tests.support.server import running_server
from tests.support.ws import WsClient

PASSWORD = "correct horse battery"
# The test server is reached from 127.0.0.1, which plays the Ingress here.
PROXY = "127.0.0.1/32"


def behind_proxy(base_url: str, client_address: str) -> ApiClient:
    """A client whose requests the proxy forwards with its address appended."""
    client = ApiClient(base_url)
    client.http.headers["X-Forwarded-For"] = client_address
    return client


async def test_one_address_failing_does_not_lock_out_another(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", trusted_proxies=[PROXY],
                             login_ip_attempts=5, login_account_failures=3)
    async with running_server(settings) as (base_url, _):
        victim = behind_proxy(base_url, "198.51.100.7")
        attacker = behind_proxy(base_url, "203.0.113.9")
        try:
            await victim.register("vera")
            await victim.post("/api/auth/logout")
            # The attacker guesses vera's password until that is refused, then sprays other names.
            guesses = [(await attacker.login("vera", f"guess {i}")).status_code for i in range(4)]
            assert guesses == [401, 401, 401, 429]
            sprayed = [(await attacker.login(f"user{i}", "guess")).status_code for i in range(3)]
            assert sprayed[-1] == 429  # five attempts from its address are all it gets
            # Vera, at her own address: her first wrong password is just wrong, and then she gets in.
            wrong = await victim.login("vera", "my old password")
            assert wrong.status_code == 401 and error_code(wrong) == "invalid_credentials"
            assert (await victim.login("vera")).status_code == 200
        finally:
            await victim.aclose()
            await attacker.aclose()


async def test_forwarded_headers_are_believed_only_from_trusted_proxies(backend, tmp_path):
    # 127.0.0.1 is not a trusted proxy here, so whatever it forwards is the client's own say-so.
    settings = make_settings(backend, tmp_path / "data", trusted_proxies=["10.0.0.0/8"], login_ip_attempts=3)
    async with running_server(settings) as (base_url, _):
        forger = ApiClient(base_url)
        try:
            statuses = []
            for i in range(4):
                forger.http.headers["X-Forwarded-For"] = f"192.0.2.{i}"
                forger.http.headers["X-Real-IP"] = f"192.0.2.{i}"
                statuses.append((await forger.login("nobody", "guess")).status_code)
            assert statuses == [401, 401, 401, 429]
        finally:
            await forger.aclose()
    # Behind a trusted proxy, what the client itself wrote further left is not believed either.
    settings = make_settings(backend, tmp_path / "data2", trusted_proxies=[PROXY], login_ip_attempts=3)
    async with running_server(settings) as (base_url, _):
        forger = ApiClient(base_url)
        try:
            statuses = []
            for i in range(4):
                forger.http.headers["X-Forwarded-For"] = f"192.0.2.{i}, 203.0.113.50"
                statuses.append((await forger.login("nobody", "guess")).status_code)
            assert statuses == [401, 401, 401, 429]
        finally:
            await forger.aclose()


async def test_concurrent_guesses_are_counted_before_the_check(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", login_account_failures=3, login_ip_attempts=100)
    async with running_server(settings) as (base_url, _):
        client = ApiClient(base_url)
        try:
            await client.register("walt")
            responses = await asyncio.gather(*(client.login("walt", f"guess {i}") for i in range(12)))
            statuses = sorted(r.status_code for r in responses)
            assert statuses.count(401) == 3 and statuses.count(429) == 9, statuses
        finally:
            await client.aclose()


async def test_lockout_says_when_in_words_once(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", login_account_failures=2, login_window_secs=15 * 60)
    async with running_server(settings) as (base_url, _):
        client = ApiClient(base_url)
        try:
            await client.register("xena")
            for _ in range(2):
                await client.login("xena", "wrong password")
            locked = await client.login("xena", "wrong password")
            assert locked.status_code == 429 and error_code(locked) == "rate_limited"
            message = locked.json()["error"]["message"]
            assert message == "Too many failed log-ins for this account; try again in 15 minutes.", message
            assert 840 <= int(locked.headers["Retry-After"]) <= 900
            # A name longer than any account's is wrong at once (and keeps the counters' keys short).
            long_name = await client.login("x" * 10_000, "whatever")
            assert long_name.status_code == 401 and error_code(long_name) == "invalid_credentials"
        finally:
            await client.aclose()


async def test_registration_and_password_changes_are_throttled(backend, tmp_path):
    settings = make_settings(backend, tmp_path / "data", trusted_proxies=[PROXY], register_limit=2,
                             password_change_limit=2)
    async with running_server(settings) as (base_url, _):
        one, other = behind_proxy(base_url, "198.51.100.1"), behind_proxy(base_url, "198.51.100.2")
        try:
            await one.register("yara")
            await one.register("yuri")
            refused = await one.post("/api/auth/register", {"username": "yoda", "password": PASSWORD})
            assert refused.status_code == 429 and "try again in" in refused.json()["error"]["message"]
            await other.register("yoda")  # another address is not held up
            changes = [(await other.post("/api/me/password", {"current_password": "wrong one",
                                                               "new_password": "a new password"})).status_code
                       for _ in range(3)]
            assert changes == [401, 401, 429]
        finally:
            await one.aclose()
            await other.aclose()


async def test_page_cache_floods_do_not_reset_throttles(embedded_backend, tmp_path):
    settings = make_settings(embedded_backend, tmp_path / "data", login_ip_attempts=2,
                             memory_cache_max_bytes=64 * 1024)
    async with running_server(settings) as (base_url, runtime):
        client = ApiClient(base_url)
        try:
            for _ in range(3):
                await client.login("nobody", "guess")
            assert (await client.login("nobody", "guess")).status_code == 429
            # Cheap cached pages with random filters, as a client would send them, then as many entries
            # as the old shared cache held: the counters live elsewhere.
            for _ in range(300):
                page = await client.get(f"/api/posts?tag={uuid.uuid4().hex[:12]}&model={'m' * 2000}")
                assert page.status_code == 200
            for i in range(10_001):
                await runtime.cache.set(f"gallery:filler:{i}", b"[]", ttl_secs=60)
            assert (await client.login("nobody", "guess")).status_code == 429
        finally:
            await client.aclose()


async def test_access_log_names_the_forwarded_client_and_hides_tokens(embedded_backend, tmp_path, caplog):
    settings = make_settings(embedded_backend, tmp_path / "data", trusted_proxies=[PROXY])
    async with running_server(settings) as (base_url, _):
        client = behind_proxy(base_url, "198.51.100.77")
        try:
            await client.register("zane")
            secret = (await client.post("/api/tokens", {"name": "script"})).json()["token"]
            with caplog.at_level(logging.INFO, logger="va.access"):
                socket = await WsClient.connect(base_url, token=secret)
                socket.close()
                await client.get("/api/me?token=" + secret)
                await asyncio.sleep(0.1)
            lines = [record.getMessage() for record in caplog.records if record.name == "va.access"]
            assert lines and not any(secret in line for line in lines), lines
            assert any("/ws?token=[redacted]" in line for line in lines), lines
            assert any("(198.51.100.77)" in line for line in lines), lines
        finally:
            await client.aclose()
