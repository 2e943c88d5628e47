#!/usr/bin/env python3
"""Visionary Art command line: serve (default) | worker | migrate | demo-model | moderator."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from config import Settings, load_settings

log = logging.getLogger("va")

# Each command imports what it needs when it runs: a web process must never load torch (only a worker
# does), and `migrate` should not pay for either.


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _start_runtime(settings: Settings):  # -> Runtime
    from server.runtime import MigrationsPending, Runtime

    try:
        return await Runtime.start(settings)
    except MigrationsPending as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


async def serve(settings: Settings) -> None:
    from server.app import make_app, make_http_server

    runtime = await _start_runtime(settings)
    if settings.inference_enabled:
        from server.worker.role import WorkerRole

        await WorkerRole.start(runtime)
    app = make_app(runtime)
    # torch, diffusers and transformers leave millions of long-lived objects; a full collection walks them all
    # (hundreds of ms, a p99 spike every few seconds under load). Freezing them keeps the collector on new ones.
    gc.collect()
    gc.freeze()
    server = make_http_server(app)
    server.listen(settings.port, settings.host)
    mode = "embedded (SQLite, in-process)" if runtime.embedded else "services"
    role = "web + worker" if settings.inference_enabled else "web only"
    log.info("Visionary Art listening on http://%s:%d in %s mode (%s)", settings.host, settings.port, mode, role)
    await _wait_for_signal()
    log.info("shutting down: no new connections; sockets close with 1001 (going away)")
    server.stop()
    await runtime.close()  # stops the worker first: running jobs finish or go back to the queue
    await server.close_all_connections()


async def worker(settings: Settings) -> None:
    """A worker alone: takes jobs from the shared queue until SIGTERM, then finishes or hands them back."""
    from prometheus_client import start_http_server

    from server.worker.role import WorkerRole

    runtime = await _start_runtime(settings)
    role = await WorkerRole.start(runtime)
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, addr=settings.host, registry=runtime.registry)
    gc.collect()
    gc.freeze()
    log.info("worker %s ready", role.runner.id)
    await _wait_for_signal()
    log.info("worker %s stopping: no new jobs", role.runner.id)
    await runtime.close()


async def migrate(settings: Settings) -> None:
    from server.store.database import create_engine
    from server.store.migrations import upgrade_to_head

    engine = create_engine(settings.effective_database_url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    log.info("database is at the newest schema")


async def set_moderator(settings: Settings, username: str, moderator: bool) -> None:
    from server.runtime import Runtime

    runtime = await Runtime.start(settings)
    try:
        user = await runtime.users.set_moderator(username, moderator)
        log.info("%s is %s a moderator", user.username, "now" if moderator else "no longer")
    finally:
        await runtime.close()


def demo_model(settings: Settings, overwrite: bool) -> None:
    """The tiny random-weight model, a tiny ControlNet from its UNet, and a style preset using both."""
    from inference.demo_model import DEMO_CONTROLNET_NAME, DEMO_MODEL_NAME, build_demo_controlnet, build_demo_model
    from inference.models import CONTROLNET_FOLDER

    for target, build in ((settings.models_dir / DEMO_MODEL_NAME, build_demo_model),
                          (settings.models_dir / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME, build_demo_controlnet)):
        if target.exists() and not overwrite:
            log.info("%s already exists (use --overwrite to rebuild it)", target)
        else:
            build(target, overwrite=overwrite)
            log.info("wrote %s", target)
    asyncio.run(demo_preset(settings, DEMO_MODEL_NAME, DEMO_CONTROLNET_NAME))


async def demo_preset(settings: Settings, model: str, controlnet: str) -> None:
    from server.presets import demo_preset_values

    runtime = await _start_runtime(settings)
    try:
        preset, created = await runtime.presets.ensure(demo_preset_values(model, controlnet))
        log.info("style preset %r %s", preset["name"], "created" if created else "already exists")
    finally:
        await runtime.close()


async def discord_register(settings: Settings) -> int:
    from tornado.httpclient import HTTPClientError

    from server.discord import register_commands
    from server.errors import AppError

    try:
        stored = await register_commands(settings)
    except AppError as exc:
        log.error("%s", exc.message)
        return 1
    except (HTTPClientError, OSError) as exc:
        log.error("Discord refused the commands: %s", exc)
        return 1
    log.info("registered the slash commands: %s", ", ".join(f"/{command['name']}" for command in stored))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__)
    parser.add_argument("--log-level", default="info")
    commands = parser.add_subparsers(dest="command")
    serve_cmd = commands.add_parser("serve", help="run the web service (and a worker, unless inference is disabled)")
    serve_cmd.add_argument("--host")
    serve_cmd.add_argument("--port", type=int)
    commands.add_parser("worker", help="run a GPU worker: take jobs from the shared queue")
    commands.add_parser("migrate", help="apply pending database migrations")
    demo = commands.add_parser("demo-model", help="build the tiny random-weight demo model, a ControlNet and a style "
                                                  "preset using them")
    demo.add_argument("--overwrite", action="store_true")
    moderator = commands.add_parser("moderator", help="grant (or --revoke) the moderator role")
    moderator.add_argument("username")
    moderator.add_argument("--revoke", action="store_true")
    commands.add_parser("discord-register", help="register the Discord slash commands (/imagine, /stylize, /link) "
                                                 "with discord_application_id and discord_bot_token")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)

    overrides = {}
    for name in ("host", "port"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    settings = load_settings(**overrides)
    command = args.command or "serve"
    if command == "serve":
        asyncio.run(serve(settings))
    elif command == "worker":
        asyncio.run(worker(settings))
    elif command == "migrate":
        asyncio.run(migrate(settings))
    elif command == "moderator":
        asyncio.run(set_moderator(settings, args.username, not args.revoke))
    elif command == "demo-model":
        demo_model(settings, args.overwrite)
    elif command == "discord-register":
        return asyncio.run(discord_register(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
