"""Benchmark: the gallery with 100,000 posts in MariaDB, 64 concurrent clients, cache on vs off.

Seeds a fresh MariaDB database (users, posts, tags; foreign-key checks off while
seeding, as a bulk import would), then for each of "cache on" (Redis, 60 s) and
"cache off" starts the real server (`run.py serve`, MariaDB + Redis) and drives
64 keep-alive connections at: the first page, a deep page (cursor 90,000 posts
in) of the newest gallery, the first and a deep page of top-all-time, and a tag
page. Prints p50/p99 and requests/s per page. Then counts the SQL statements one
request issues (in-process, with an SQLAlchemy event hook), anonymous and signed
in, to show there is no N+1. Not a test: figures only.

    .venv/bin/python bench/gallery.py [--posts 100000] [--seconds 8] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

import pymysql
import redis
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import guard  # noqa: E402
from bench.http_api import free_port, start_server  # noqa: E402
from bench.loadgen import run_load  # noqa: E402
from config import load_settings  # noqa: E402
from server.posts import GalleryQuery  # noqa: E402
from server.runtime import Runtime  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TAGS = ["landscape", "portrait", "anime", "cyberpunk", "watercolor", "fantasy", "sea", "city", "cat", "space"]
MODELS = ["sd15-base", "sdxl-base", "demo-tiny", "dreamshaper", "realistic-vision"]


def seed(conn: pymysql.connections.Connection, posts: int, users: int = 1000) -> None:
    rng = random.Random(7)
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute("SET FOREIGN_KEY_CHECKS=0")
        cur.executemany(
            "INSERT INTO users (username, password_hash, display_name, bio, is_moderator, created_at, updated_at)"
            " VALUES (%s, 'x', %s, '', 0, NOW(6), NOW(6))",
            [(f"artist{i}", f"Artist {i}") for i in range(users)])
        batch = 5000
        for start in range(0, posts, batch):
            rows, tag_rows = [], []
            for n in range(start, min(posts, start + batch)):
                post_id = n + 1
                tags = rng.sample(TAGS, rng.randint(1, 3))
                settings = json.dumps({"prompt": f"a painting number {n}", "steps": 30, "seed": n})
                # One post a minute up to now (so a week holds ~10,000); likes follow a long tail.
                rows.append((post_id, rng.randint(1, users), uuid.uuid4().hex, f"Artwork {n}", "", " ".join(tags),
                             int(rng.random() < 0.05), rng.choice(MODELS), settings, uuid.uuid4().hex, 512, 512,
                             int(rng.paretovariate(1.2)) - 1, int(rng.random() < 0.01), posts))
                tag_rows += [(tag, post_id) for tag in tags]
            cur.executemany(
                "INSERT INTO posts (id, owner_id, job_id, title, description, tags, nsfw, model, settings, cover_image_id,"
                " cover_width, cover_height, like_count, hidden, created_at, updated_at)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,DATE_SUB(NOW(6), INTERVAL (%s - id) MINUTE),NOW(6))", rows)
            cur.executemany("INSERT INTO post_tags (tag, post_id) VALUES (%s, %s)", tag_rows)
        cur.execute("SET FOREIGN_KEY_CHECKS=1")
        cur.execute("ANALYZE TABLE posts, post_tags, users")
    print(f"seeded {posts:,} posts by {users:,} users in {time.perf_counter() - started:.1f} s")


def deep_cursors(conn: pymysql.connections.Connection, depth: int) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM posts WHERE hidden = 0 ORDER BY id DESC LIMIT 1 OFFSET %s", (depth,))
        new = str(cur.fetchone()[0])
        cur.execute("SELECT like_count, id FROM posts WHERE hidden = 0 ORDER BY like_count DESC, id DESC"
                    " LIMIT 1 OFFSET %s", (depth,))
        likes, post_id = cur.fetchone()
    return {"new": new, "top": f"{likes}.{post_id}"}


def pages(cursors: dict[str, str], depth: int) -> list[tuple[str, str]]:
    return [
        ("newest, first page", "/api/posts?limit=24"),
        (f"newest, {depth:,} posts deep", f"/api/posts?limit=24&cursor={cursors['new']}"),
        ("top all time, first page", "/api/posts?sort=top&limit=24"),
        (f"top all time, {depth:,} deep", f"/api/posts?sort=top&limit=24&cursor={cursors['top']}"),
        ("tag 'sea', first page", "/api/posts?tag=sea&limit=24"),
        ("top of the week", "/api/posts?sort=top&period=week&limit=24"),
    ]


async def load_all(port: int, targets: list[tuple[str, str]], connections: int, seconds: float) -> dict[str, object]:
    results = {}
    for name, path in targets:
        await run_load("127.0.0.1", port, path, {}, connections=connections, seconds=1.0)  # warm-up
        results[name] = await run_load("127.0.0.1", port, path, {}, connections=connections, seconds=seconds)
    return results


def run_server_mode(env: dict[str, str], targets: list[tuple[str, str]], args: argparse.Namespace) -> dict:
    port = free_port()
    server = start_server(env, port)
    try:
        return asyncio.run(load_all(port, targets, args.connections, args.seconds))
    finally:
        guard.stop(server)


async def count_queries(database_url: str, redis_url: str, prefix: str, cursors: dict[str, str]) -> None:
    settings = load_settings(database_url=database_url, redis_url=redis_url, redis_prefix=prefix,
                             inference_enabled=False, gallery_cache_ttl_secs=0, data_dir=Path("/tmp/va-bench-gallery"))
    runtime = await Runtime.start(settings, migrate=False)
    statements: list[str] = []
    event.listen(runtime.engine.sync_engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2]))
    try:
        viewer = await runtime.users.get_by_username("artist1")
        print("\nSQL statements per gallery request (cache off, so every request reaches the database):")
        for label, query in [("newest, first page", GalleryQuery()),
                             ("newest, deep page", GalleryQuery(cursor=cursors["new"])),
                             ("top, deep page", GalleryQuery(sort="top", cursor=cursors["top"])),
                             ("by tag", GalleryQuery(tag="sea")),
                             ("limit 100", GalleryQuery(limit=100))]:
            counts = []
            for who in (None, viewer):
                statements.clear()
                posts, _ = await runtime.community.posts.gallery(who, query)
                counts.append(len(statements))
            print(f"  {label:22s} {len(posts):3d} posts: anonymous {counts[0]} statement(s), signed in {counts[1]}")
        statements.clear()
        await runtime.community.posts.gallery(viewer, GalleryQuery(following=True))
        print(f"  {'following feed':22s} signed in {len(statements)} statement(s)")
    finally:
        await runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--deadline-secs", type=float, default=3600, help="give up (exit 2) after this long")
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


def run(args: argparse.Namespace) -> None:
    with guard.scratch_database("va_bench_gallery") as name:
        measure(args, name)


def measure(args: argparse.Namespace, name: str) -> None:
    database_url = f"mysql+aiomysql://root@127.0.0.1:3306/{name}?charset=utf8mb4"
    prefix = f"va:bench:{uuid.uuid4().hex[:8]}:"
    redis_url = "redis://127.0.0.1:6379/0"
    env = {"VA_DATABASE_URL": database_url, "VA_REDIS_URL": redis_url, "VA_REDIS_PREFIX": prefix,
           "VA_INFERENCE_ENABLED": "false", "VA_DATA_DIR": "/tmp/va-bench-gallery"}
    try:
        guard.run([sys.executable, "run.py", "--log-level", "warning", "migrate"], cwd=ROOT,
                  env={**os.environ, **env})
        # Autocommit, so no open transaction holds a metadata lock that would stall the DROP at the end.
        with guard.mariadb(name) as conn:
            seed(conn, args.posts)
            depth = int(args.posts * 0.9)
            cursors = deep_cursors(conn, depth)
        targets = pages(cursors, depth)
        results = {
            "cache on": run_server_mode({**env, "VA_GALLERY_CACHE_TTL_SECS": "60"}, targets, args),
            "cache off": run_server_mode({**env, "VA_GALLERY_CACHE_TTL_SECS": "0"}, targets, args),
        }
        print(f"\n{args.connections} concurrent clients, {args.seconds:.0f} s per page, anonymous GETs:")
        print(f"{'page':28s} {'cache on':>42s}   {'cache off':>42s}")
        for label, _ in targets:
            on, off = results["cache on"][label], results["cache off"][label]
            print(f"{label:28s} {on.rps:7.0f} req/s p50 {on.percentile(0.5) * 1000:6.1f} p99 "
                  f"{on.percentile(0.99) * 1000:6.1f} ms   {off.rps:7.0f} req/s p50 "
                  f"{off.percentile(0.5) * 1000:6.1f} p99 {off.percentile(0.99) * 1000:6.1f} ms")
        asyncio.run(asyncio.wait_for(count_queries(database_url, redis_url, prefix, cursors), 300))
    finally:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=30)
        try:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


if __name__ == "__main__":
    main()
