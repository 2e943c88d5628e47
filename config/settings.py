"""Settings: defaults, then an optional TOML file, then ``VA_*`` environment variables.

Built once at start-up and passed down; nothing reads a global. Tests build
their own instance with keyword arguments.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import DirectoryPath, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

COOKIE_SECRET_FILE = "cookie_secret"
MIN_COOKIE_SECRET_CHARS = 32  # shorter secrets make signed cookies guessable
MiB = 1024 * 1024
# Loopback and the private ranges (RFC 1918, IPv6 unique-local): where a cluster's Prometheus scrapes from.
DEFAULT_METRICS_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
MIN_METRICS_TOKEN_CHARS = 16  # a bearer secret short enough to guess is no limit


class Settings(BaseSettings):
    """Everything the service can be told, with defaults for a laptop."""

    model_config = SettingsConfigDict(env_prefix="VA_", extra="forbid", validate_default=True)

    # Where the service listens and what it calls itself.
    host: str = "127.0.0.1"
    port: int = Field(8888, ge=0, le=65535)
    dev_mode: bool = False
    # Exact origins allowed to open the WebSocket; the service's own origin is always allowed.
    allowed_origins: list[str] = Field(default_factory=list)
    # Set behind HTTPS so cookies carry the Secure flag.
    secure_cookies: bool = False

    # Storage. With no database URL the service uses SQLite under data_dir;
    # with no Redis URL it runs its cache, rate limiter and hub in-process.
    data_dir: Path = Path("data")
    database_url: str | None = None
    redis_url: str | None = None
    # Every Redis key starts with this, so several deployments (or tests) share one Redis.
    redis_prefix: str = "va:"
    database_echo: bool = False
    # MariaDB closes idle connections after wait_timeout (8 h by default); recycle well before.
    database_pool_recycle_secs: int = 60 * 30
    database_pool_size: int = 10

    cookie_secret: str | None = None
    session_days: int = Field(30, ge=1, le=365)

    frontend_dist: Path = Path(__file__).resolve().parent.parent / "frontend" / "dist"

    # Request limits.
    max_json_body_bytes: int = Field(1 * MiB, ge=1024)
    max_avatar_bytes: int = Field(5 * MiB, ge=1024)
    avatar_size_px: int = Field(256, ge=32, le=1024)

    # Passwords: argon2id, OWASP's minimum is m=19 MiB, t=2, p=1.
    argon2_time_cost: int = Field(2, ge=1)
    argon2_memory_kib: int = Field(19 * 1024, ge=8 * 1024)
    argon2_parallelism: int = Field(1, ge=1)
    password_min_chars: int = 8
    # Argon2 takes any length, so a bound stops multi-megabyte "passwords" from costing CPU.
    password_max_chars: int = 256

    # Log-in throttling: attempts per IP and failures per account in a window.
    login_ip_attempts: int = Field(30, ge=1)
    login_account_failures: int = Field(10, ge=1)
    login_window_secs: int = Field(15 * 60, ge=1)

    # Live chat: sends per user per window, and frames per socket per second before it counts as a flood.
    chat_send_limit: int = Field(20, ge=1)
    chat_send_window_secs: int = Field(10, ge=1)
    ws_max_frames_per_sec: int = Field(200, ge=1)
    # Bytes queued for one socket before it is dropped as too slow (close 4008).
    ws_max_send_buffer_bytes: int = Field(4 * MiB, ge=64 * 1024)

    # Generation. `serve` runs a worker (the engine and the job loop) in this process unless disabled
    # (web-only processes); `run.py worker` is a worker alone.
    inference_enabled: bool = True
    # Previews per second per job; frames in between are dropped, not queued.
    preview_fps: float = Field(8.0, ge=0)
    # Frames per second per tile on the Live page (the web side thins the previews it already gets).
    live_tile_fps: float = Field(2.0, gt=0, le=10)
    queue_max_global: int = Field(20, ge=1)
    queue_max_per_user: int = Field(5, ge=1)
    max_init_image_bytes: int = Field(10 * MiB, ge=1024)

    # Art studio (OpenCV filters, no weights): photos are scaled to this long side before filtering;
    # results are cached by perceptual hash for this long; the four styles run on a pool of this many threads.
    art_max_side_px: int = Field(1024, ge=64, le=8192)
    art_cache_ttl_secs: int = Field(60 * 60, ge=1)
    art_threads: int = Field(4, ge=1)
    art_max_upload_bytes: int = Field(20 * MiB, ge=1024)

    # Gallery pages are cached this long (like counts may lag by as much); 0 turns the cache off.
    gallery_cache_ttl_secs: int = Field(60, ge=0)
    # Collaborative sessions: y-protocols messages per member per window (keystrokes and cursor moves;
    # 10 characters a second is brisk typing), the largest message (under the 64 KiB WebSocket frame),
    # and how many stored updates a session gathers before they are compacted into one snapshot (0: never).
    collab_update_limit: int = Field(100, ge=1)
    collab_update_window_secs: int = Field(2, ge=1)
    collab_max_update_bytes: int = Field(32 * 1024, ge=1024, le=60 * 1024)
    collab_compact_rows: int = Field(500, ge=0)
    # A session's stored updates past this size refuse further edits (compaction brings the size down).
    collab_max_document_bytes: int = Field(4 * MiB, ge=1024)
    # Model hub: the largest file accepted, how long an abandoned tus upload is kept, how long lists and
    # details stay cached (0 turns the cache off, for comparison), how often counters reach the database.
    hub_max_file_bytes: int = Field(20 * 1024 * MiB, ge=1024)
    hub_upload_expiry_secs: int = Field(24 * 60 * 60, ge=1)
    hub_cache_ttl_secs: float = Field(60.0, ge=0)
    hub_counter_flush_secs: float = Field(10.0, gt=0)
    # Behind nginx: the `internal` location that serves the blob store (its `alias` is <data_dir>/blobs/),
    # e.g. "/_va_blobs/". Set, a download is answered with `X-Accel-Redirect` and no body, and nginx sends
    # the file itself (sendfile, ranges); unset, the service streams it. See README "Behind nginx".
    hub_accel_redirect_prefix: str | None = Field(None, pattern=r"^/[A-Za-z0-9._~/-]*$")

    # Workers. A worker renews its leases twice per heartbeat; a job whose lease went unrenewed for
    # `worker_claim_secs` is taken over by another worker (kill -9 to running again: about that long).
    # A job that stopped its worker `job_max_attempts` times fails (`worker_lost`) instead of running again.
    # On SIGTERM a worker takes no new job and lets running ones finish for `worker_stop_grace_secs`,
    # then hands them back to the queue. `worker_metrics_port` serves a worker's /metrics (none: off).
    worker_heartbeat_secs: float = Field(1.0, gt=0, le=60)
    worker_claim_secs: float = Field(1.5, gt=0, le=600)
    job_max_attempts: int = Field(3, ge=1, le=100)
    worker_stop_grace_secs: float = Field(30.0, ge=0)
    worker_metrics_port: int | None = Field(None, ge=0, le=65535)
    # A worker's model-cache budgets in MiB; none: derived from the device (75 % of a GPU) and from the
    # memory this container may use. Set them when several workers share one GPU (time-slicing).
    worker_device_budget_mib: int | None = Field(None, ge=1)
    worker_host_budget_mib: int | None = Field(None, ge=0)
    # Hardening (content): prompt screening lists and who may read /metrics.
    # A folder of `<lang>.block.txt` / `<lang>.allow.txt` files merged with the bundled screening lists.
    screening_terms_dir: DirectoryPath | None = None
    # /metrics answers peers in these networks (Prometheus inside a cluster scrapes pod addresses, which are
    # private) unless the request came through a proxy (Forwarded / X-Forwarded-For / X-Real-IP), and anyone
    # who sends `Authorization: Bearer <metrics_token>`. An empty list leaves the token as the only way in.
    metrics_allowed_networks: list[IPvAnyNetwork] = Field(default_factory=lambda: list(DEFAULT_METRICS_NETWORKS))
    metrics_token: str | None = Field(None, min_length=MIN_METRICS_TOKEN_CHARS)
    # Hardening (issue 15): who may say where a request came from, and throttles on costly or noisy actions.
    # Networks (CIDR) of the proxies in front of the service (the Ingress, a load balancer); only a peer in
    # one of them is believed about the client's address (X-Forwarded-For, X-Real-IP). Empty: nobody is.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Failures on one account from all addresses together in a log-in window, past which an address that has
    # itself failed there is refused too (a spread-out guessing attack); a first try from elsewhere still passes.
    login_account_all_failures: int = Field(100, ge=1)
    # New accounts per client address, and password changes per account, per window (each costs argon2).
    register_limit: int = Field(20, ge=1)
    register_window_secs: int = Field(60 * 60, ge=1)
    password_change_limit: int = Field(5, ge=1)
    password_change_window_secs: int = Field(15 * 60, ge=1)
    # Chat edits per user per window (each is a write and a fan-out); typing is fanned out at most once per
    # user and room per interval (more is dropped quietly); 0 fans every one out (bench/ws_fanout.py measures
    # the socket fan-out with typing events, which nothing stores).
    chat_edit_limit: int = Field(20, ge=1)
    chat_edit_window_secs: int = Field(10, ge=1)
    typing_interval_secs: int = Field(2, ge=0)
    # Room replays (`sub` with `since`, up to 1,001 rows each) per user, or per address when anonymous, per
    # window; and topics one socket may watch at once.
    ws_replay_limit: int = Field(30, ge=1)
    ws_replay_window_secs: int = Field(10, ge=1)
    ws_max_subscriptions: int = Field(200, ge=1)
    # Collab invitation links per owner per window, how long one lasts by default and at most.
    collab_invite_limit: int = Field(30, ge=1)
    collab_invite_window_secs: int = Field(60 * 60, ge=1)
    collab_invite_default_secs: int = Field(7 * 24 * 60 * 60, ge=60)
    collab_invite_max_secs: int = Field(30 * 24 * 60 * 60, ge=60)
    # How long a chat `ref` is remembered (a retry within it returns the stored message).
    chat_ref_ttl_secs: int = Field(60 * 60, ge=1)
    # The in-process cache's bound (embedded mode; Redis has its own `maxmemory`).
    memory_cache_max_bytes: int = Field(64 * MiB, ge=64 * 1024)

    # Stylize (issue 17): the largest photo accepted (the engine reads at most 32 MiB), and the site's public
    # address for link previews: Open Graph `og:image` must be an absolute URL (none: each request's Host).
    stylize_max_upload_bytes: int = Field(20 * MiB, ge=1024, le=32 * MiB)
    public_url: str | None = Field(None, pattern=r"^https?://[^/\s?#]+(/[^\s?#]*)?$")

    # `/imagine <prompt>` in a room (issue 18): the model (none: the first installed), steps and square side
    # (none: the model's native side) of the public job it starts.
    imagine_model: str | None = None
    imagine_steps: int = Field(20, ge=1, le=150)
    imagine_side_px: int | None = Field(None, ge=64, le=2048, multiple_of=8)

    # Discord interactions (issue 18): `POST /discord/interactions` answers 404 until the application's public key
    # (hex) is set; the application id and bot token edit responses and register the commands
    # (`run.py discord-register`); `discord_api_base` is Discord's API (tests point it at a local stand-in);
    # `discord_guilds`: the servers (guild ids) the bot answers in, every one when empty (JSON list in the env).
    discord_public_key: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    discord_application_id: str | None = Field(None, pattern=r"^[0-9]{1,32}$")
    discord_bot_token: SecretStr | None = None
    discord_api_base: str = Field("https://discord.com/api/v10", pattern=r"^https?://[^\s?#]+$")
    discord_guilds: list[str] = Field(default_factory=list)
    # Webhook edits of one response come at most this often (Discord rate-limits them; a 429 is waited out).
    discord_edit_interval_secs: float = Field(3.0, ge=0.0)
    # A Discord user who has not linked an account: "refuse" tells them to `/link` first; "bot" runs their
    # /imagine and /stylize as one bot account (`discord_bot_username`: made on first use, with no password, so
    # nobody signs in as it; its jobs are public), each Discord user with a line of their own in the queue: their
    # own turn, and at most `discord_queue_max_per_user` jobs waiting, so one of them cannot crowd out the rest.
    discord_unlinked: Literal["refuse", "bot"] = "refuse"
    discord_bot_username: str = Field("discord_bot", pattern=r"^[a-z0-9_]{3,32}$")
    discord_queue_max_per_user: int = Field(2, ge=1)

    # Threads for blocking work that is not torch: hashing, file I/O, Pillow.
    io_threads: int = Field(4, ge=1)
    cpu_threads: int = Field(max(2, os.cpu_count() or 2), ge=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("VA_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"`trusted_proxies` must be networks like 10.0.0.0/8 but has {network!r}.") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("redis_prefix")
    @classmethod
    def _prefix_ends_with_colon(cls, value: str) -> str:
        return value if value.endswith(":") else value + ":"

    @model_validator(mode="after")
    def _check_secret(self) -> "Settings":
        if self.cookie_secret is not None and len(self.cookie_secret) < MIN_COOKIE_SECRET_CHARS:
            if not self.dev_mode:
                raise ValueError(
                    f"`cookie_secret` must be at least {MIN_COOKIE_SECRET_CHARS} characters "
                    f"but is {len(self.cookie_secret)}; leave it unset to have one generated."
                )
        return self

    @model_validator(mode="after")
    def _check_leases(self) -> "Settings":
        if self.worker_claim_secs <= self.worker_heartbeat_secs:
            raise ValueError(
                f"`worker_claim_secs` must be longer than `worker_heartbeat_secs` (a lease is renewed once per half "
                f"heartbeat) but is {self.worker_claim_secs} <= {self.worker_heartbeat_secs}."
            )
        return self

    @property
    def effective_database_url(self) -> str:
        """The configured database, or SQLite under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'visionary.db').resolve()}"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def resolved_cookie_secret(self) -> str:
        """The configured secret, or one generated once and kept in the data directory."""
        if self.cookie_secret:
            return self.cookie_secret
        path = self.data_dir / COOKIE_SECRET_FILE
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48)
        # Created 0600 so other local users cannot forge sessions.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        return secret


def load_settings(**overrides: Any) -> Settings:
    """Build settings from defaults, ``$VA_CONFIG`` (TOML) and ``VA_*`` variables."""
    return Settings(**overrides)
