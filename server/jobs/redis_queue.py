"""The job queue on Redis: fair waiting lines, and a Streams consumer group for delivery and leases.

Waiting jobs are not in the stream. Each user has a list (`wait:<user>`), and a
sorted set (`line`) orders the users by when each was last served (never served
first, then by arrival). A worker with a free slot runs the TAKE script: it picks
the job by the policy in `server.jobs.queue` (fair first, model affinity second),
XADDs it to the stream and, in the same script, XREADGROUPs it as that worker's
consumer, so the entry lands in that worker's pending list atomically. The
pending list is the lease: the worker renews it with every heartbeat (XCLAIM
JUSTID resets its idle time), XACKs it after the outcome is committed, and a
worker that stops heartbeating loses its jobs to XAUTOCLAIM by any other worker.

Every script builds its keys from one prefix, so this needs a single Redis (not
Redis Cluster). Keys under `<redis_prefix>jobs:`:
`line` (zset), `wait:<user>` (lists), `served` (hash user -> tick), `tick`,
`arrivals`, `nwait`, `passed`, `jobs` (hash job -> `w:<user>:<backlog entry>` waiting |
`r:<entry>` leased), `stream` + group `workers` (leased jobs), `waiting` (one entry per
waiting job: the backlog as a stream, so KEDA's redis-streams scaler can read it with
`streamLength`, and the running ones with `pendingEntriesCount` on `stream`), `dead`
(capped stream), `places`, `progress`, `cancel:<job>`, `worker:<id>`, `workers` (zset
by heartbeat), `epoch`, `lock:<name>`, `redeliveries`, `dead_letters`; channels `wake`
and `cancel`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import msgpack
import redis.asyncio as redis
from redis.exceptions import RedisError

from server.jobs.queue import (AFFINITY_LOOKAHEAD_USERS, CancelListener, JobLive, LatestPreview, Lease, PlacePublisher,
                               QueuedJob, QueueFull, QueueStats, QueueUnavailable, WorkerInfo)

log = logging.getLogger(__name__)

GROUP = "workers"
# Dead letters kept for inspection (approximate cap: XADD MAXLEN ~).
DEAD_LETTERS_KEPT = 1000
# A cancel request outlives any wait for a worker to take the job and notice it.
CANCEL_TTL_SECS = 3600
# The place announcer's lock: held while it publishes, expires if its holder dies.
PLACES_LOCK_MS = 5000
# A worker missing heartbeats for this many intervals is dropped from the registry.
WORKER_EXPIRY_HEARTBEATS = 3
LISTEN_RETRY_SECS = 0.5
CLOSE_WAIT_SECS = 5.0
# A job's newest preview outlives no job: the longest renders take minutes, and the key expires by itself.
PREVIEW_KEPT_MS = 15 * 60 * 1000
# A cancel message `<job>` drops what the job made; `<job>` + this keeps it (A1111's interrupt).
KEEP_SUFFIX = " keep"

_JOB_OF = "string.match(%s, '^([^|]+)|')"

# Deliver the entry `id` (just added, so the newest) to `consumer`: XREADGROUP hands out the oldest
# undelivered entries first; any before ours were not added by these scripts and go to the dead letters.
_DELIVER = """
local function deliver(P, stream, group, consumer, id)
  local foreign = {}
  while true do
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 100, 'STREAMS', stream, '>')
    if not reply then return foreign end
    local found = false
    for _, item in ipairs(reply[1][2]) do
      if item[1] == id then found = true else
        redis.call('XACK', stream, group, item[1])
        redis.call('XDEL', stream, item[1])
        redis.call('XADD', P .. 'dead', 'MAXLEN', '~', %(kept)d, '*', 'entry', cjson.encode(item[2]),
                   'reason', 'not a job entry')
        redis.call('INCR', P .. 'dead_letters')
        table.insert(foreign, item[1])
      end
    end
    if found then return foreign end
  end
end
""" % {"kept": DEAD_LETTERS_KEPT}

_OWNED = """
local function owned(stream, group, consumer, id)
  local pending = redis.pcall('XPENDING', stream, group, id, id, 1)
  return type(pending) == 'table' and not pending.err and pending[1] ~= nil and pending[1][2] == consumer
end
"""

ADMIT = """
local P, job, user, encoded = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', P .. 'jobs', job) == 1 then return {1, 0} end
local waitkey = P .. 'wait:' .. user
if ARGV[7] == '1' then
  local waiting = tonumber(redis.call('GET', P .. 'nwait') or '0')
  if waiting >= tonumber(ARGV[5]) then return {2, waiting} end
  local mine = redis.call('LLEN', waitkey)
  if mine >= tonumber(ARGV[6]) then return {3, mine} end
end
redis.call('RPUSH', waitkey, encoded)
local backlog = redis.call('XADD', P .. 'waiting', '*', 'job', job)
redis.call('HSET', P .. 'jobs', job, 'w:' .. user .. ':' .. backlog)
redis.call('INCR', P .. 'nwait')
if not redis.call('ZSCORE', P .. 'line', user) then
  local score = redis.call('HGET', P .. 'served', user)
  if not score then score = string.format('%.0f', redis.call('INCR', P .. 'arrivals') - 1e15) end
  redis.call('ZADD', P .. 'line', score, user)
end
return {0, 0}
"""

TAKE = _DELIVER + """
local P, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local stream = P .. 'stream'
redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
local users = redis.call('ZRANGE', P .. 'line', 0, tonumber(ARGV[4]) - 1)
if #users == 0 then return false end
local loaded = {}
for model in string.gmatch(ARGV[5], '[^\\n]+') do loaded[model] = true end
local first, chosen = users[1], users[1]
if redis.call('GET', P .. 'passed') ~= first then
  for _, user in ipairs(users) do
    local head = redis.call('LINDEX', P .. 'wait:' .. user, 0)
    local model = head and string.match(head, '^[^|]*|([^|]*)|')
    if model and loaded[model] then chosen = user break end
  end
end
if chosen ~= first then redis.call('SET', P .. 'passed', first) else redis.call('DEL', P .. 'passed') end
local waitkey = P .. 'wait:' .. chosen
local encoded = redis.call('LPOP', waitkey)
local tick = redis.call('INCR', P .. 'tick')
redis.call('HSET', P .. 'served', chosen, tick)
if redis.call('LLEN', waitkey) == 0 then
  redis.call('ZREM', P .. 'line', chosen)
else
  redis.call('ZADD', P .. 'line', tick, chosen)
end
if not encoded then return false end
redis.call('DECR', P .. 'nwait')
local job = %(job_of)s
if not job then
  redis.call('XADD', P .. 'dead', 'MAXLEN', '~', %(kept)d, '*', 'entry', encoded, 'reason', 'not a job entry')
  redis.call('INCR', P .. 'dead_letters')
  return {'', encoded, {}}
end
redis.call('HDEL', P .. 'places', job)
local backlog = string.match(redis.call('HGET', P .. 'jobs', job) or '', '^w:[^:]+:(.+)$')
if backlog then redis.call('XDEL', P .. 'waiting', backlog) end
local id = redis.call('XADD', stream, '*', 'job', job, 'entry', encoded)
redis.call('HSET', P .. 'jobs', job, 'r:' .. id)
return {id, encoded, deliver(P, stream, group, consumer, id)}
""" % {"job_of": _JOB_OF % "encoded", "kept": DEAD_LETTERS_KEPT}

ADOPT = _DELIVER + """
local P, group, consumer, job, encoded = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local stream = P .. 'stream'
if redis.call('HEXISTS', P .. 'jobs', job) == 1 then return false end
redis.pcall('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
local id = redis.call('XADD', stream, '*', 'job', job, 'entry', encoded)
redis.call('HSET', P .. 'jobs', job, 'r:' .. id)
deliver(P, stream, group, consumer, id)
return id
"""

RECLAIM = """
local P, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local reply = redis.pcall('XAUTOCLAIM', P .. 'stream', group, consumer, ARGV[4], '0-0', 'COUNT', 1)
if type(reply) ~= 'table' or reply.err then return false end
local item = reply[2][1]
if not item or not item[2] then return false end
redis.call('INCR', P .. 'redeliveries')
local encoded = ''
for i = 1, #item[2], 2 do if item[2][i] == 'entry' then encoded = item[2][i + 1] end end
return {item[1], encoded}
"""

ACK = _OWNED + """
local P, group, consumer, id, job = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local stream = P .. 'stream'
if not owned(stream, group, consumer, id) then return 0 end
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
redis.call('HDEL', P .. 'jobs', job)
redis.call('HDEL', P .. 'progress', job)
redis.call('DEL', P .. 'cancel:' .. job)
return 1
"""

DISCARD = """
local P, group, id, job, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local stream = P .. 'stream'
redis.pcall('XACK', stream, group, id)
redis.call('XDEL', stream, id)
if redis.call('HGET', P .. 'jobs', job) == 'r:' .. id then redis.call('HDEL', P .. 'jobs', job) end
redis.call('XADD', P .. 'dead', 'MAXLEN', '~', %(kept)d, '*', 'job', job, 'reason', reason)
redis.call('INCR', P .. 'dead_letters')
return 1
""" % {"kept": DEAD_LETTERS_KEPT}

HAND_BACK = _OWNED + """
local P, group, consumer, id, job, user, encoded = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local stream = P .. 'stream'
if not owned(stream, group, consumer, id) then return 0 end
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
redis.call('HDEL', P .. 'progress', job)
redis.call('LPUSH', P .. 'wait:' .. user, encoded)
local backlog = redis.call('XADD', P .. 'waiting', '*', 'job', job)
redis.call('HSET', P .. 'jobs', job, 'w:' .. user .. ':' .. backlog)
redis.call('INCR', P .. 'nwait')
local head = redis.call('ZRANGE', P .. 'line', 0, 0, 'WITHSCORES')
local score = -2e15
if head[2] then score = tonumber(head[2]) - 1 end
redis.call('ZADD', P .. 'line', string.format('%.0f', score), user)
return 1
"""

RENEW = _OWNED + """
local P, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local stream = P .. 'stream'
local lost = {}
for i = 4, #ARGV, 2 do
  if owned(stream, group, consumer, ARGV[i]) then
    redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i + 1])
  end
end
return lost
"""

REMOVE = """
local P, job = ARGV[1], ARGV[2]
local user, backlog = string.match(redis.call('HGET', P .. 'jobs', job) or '', '^w:([^:]+):(.+)$')
if not user then return 0 end
redis.call('XDEL', P .. 'waiting', backlog)
local waitkey = P .. 'wait:' .. user
for _, item in ipairs(redis.call('LRANGE', waitkey, 0, -1)) do
  if %(job_of)s == job then redis.call('LREM', waitkey, 1, item) break end
end
if redis.call('LLEN', waitkey) == 0 then redis.call('ZREM', P .. 'line', user) end
redis.call('HDEL', P .. 'jobs', job)
redis.call('HDEL', P .. 'places', job)
redis.call('DECR', P .. 'nwait')
return 1
""" % {"job_of": _JOB_OF % "item"}

# Every waiting job's place (users in line order, one job each per round), diffed against the last
# announcement; returns the changes as job, place, job, place...
PLACES = """
local P = ARGV[1]
local lists, longest = {}, 0
for i, user in ipairs(redis.call('ZRANGE', P .. 'line', 0, -1)) do
  lists[i] = redis.call('LRANGE', P .. 'wait:' .. user, 0, -1)
  if #lists[i] > longest then longest = #lists[i] end
end
local place, current, changes = 0, {}, {}
for depth = 1, longest do
  for i = 1, #lists do
    local item = lists[i][depth]
    local job = item and %(job_of)s
    if job then place = place + 1 current[job] = place end
  end
end
local old = redis.call('HGETALL', P .. 'places')
for i = 1, #old, 2 do if not current[old[i]] then redis.call('HDEL', P .. 'places', old[i]) end end
for job, p in pairs(current) do
  if redis.call('HGET', P .. 'places', job) ~= tostring(p) then
    redis.call('HSET', P .. 'places', job, p)
    table.insert(changes, job)
    table.insert(changes, p)
  end
end
return changes
""" % {"job_of": _JOB_OF % "item"}

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cancel_message(text: str) -> tuple[str, bool]:
    """(job id, keep) of a message on the cancel channel."""
    return (text.removesuffix(KEEP_SUFFIX), True) if text.endswith(KEEP_SUFFIX) else (text, False)


class RedisJobQueue:
    def __init__(self, client: redis.Redis, prefix: str, *, heartbeat_secs: float = 1.0):
        self._redis = client
        self._p = prefix + "jobs:"
        self._heartbeat_secs = heartbeat_secs
        self._scripts = {name: client.register_script(source) for name, source in (
            ("admit", ADMIT), ("take", TAKE), ("adopt", ADOPT), ("reclaim", RECLAIM), ("ack", ACK),
            ("discard", DISCARD), ("hand_back", HAND_BACK), ("renew", RENEW), ("remove", REMOVE),
            ("places", PLACES), ("release", RELEASE))}
        self._listeners: list[CancelListener] = []
        self._wake = asyncio.Event()
        self._listener: asyncio.Task | None = None

    async def _run(self, name: str, *args: Any) -> Any:
        return await self._scripts[name](args=[self._p, *args])

    async def start(self) -> None:
        pass  # no Redis call: a web process starts (and reports not ready) while Redis is down

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            # Bounded: a cancellation landing inside a redis-py call may be swallowed there.
            await asyncio.wait([self._listener], timeout=CLOSE_WAIT_SECS)

    # Web side

    async def admit(self, job: QueuedJob, *, max_global: int, max_per_user: int, check_caps: bool = True) -> None:
        try:
            status, count = await self._run("admit", job.job_id, job.share, job.encode(), max_global,
                                            max_per_user, "1" if check_caps else "0")
            if status == 0:
                await self._redis.publish(self._p + "wake", b"1")
        except RedisError as exc:
            raise QueueUnavailable(f"The job queue is unavailable ({type(exc).__name__}); "
                                   "nothing was queued. Try again in a moment.") from None
        if status == 2:
            raise QueueFull(f"The queue is full: {count} jobs are waiting. Try again in a moment.")
        if status == 3:
            raise QueueFull(f"You already have {count} jobs waiting, the most allowed; wait for one to finish.")

    async def remove(self, job_id: str) -> bool:
        return bool(await self._run("remove", job_id))

    async def request_cancel(self, job_id: str, keep: bool = False) -> None:
        await self._redis.set(self._p + "cancel:" + job_id, b"1", ex=CANCEL_TTL_SECS)
        await self._redis.publish(self._p + "cancel", (job_id + KEEP_SUFFIX if keep else job_id).encode())

    async def announce_places(self, publish: PlacePublisher) -> None:
        # Announcers take turns (a short lock); a change made while another announces sets `dirty`,
        # and the holder goes round again, so the last place published for a job is its current one.
        dirty, lock = self._p + "places_dirty", self._p + "lock:places"
        await self._redis.set(dirty, b"1")
        while await self._redis.exists(dirty):
            token = uuid.uuid4().hex
            if not await self._redis.set(lock, token, nx=True, px=PLACES_LOCK_MS):
                return
            try:
                while await self._redis.getdel(dirty):
                    changes = await self._run("places")
                    for job_id, place in zip(changes[::2], changes[1::2]):
                        await publish(_text(job_id), int(place))
            finally:
                await self._scripts["release"](keys=[lock], args=[token])

    async def place(self, job_id: str) -> int | None:
        try:
            value = await self._redis.hget(self._p + "places", job_id)
        except RedisError:  # live extras of a job's answer; the row is the truth and is answered without them
            return None
        return int(value) if value else None

    async def live(self, job_id: str, *, preview: bool = False) -> JobLive:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._p + "places", job_id)
            pipe.hget(self._p + "progress", job_id)
            if preview:
                pipe.get(self._p + "preview:" + job_id)
            try:
                place, progress, *latest = await pipe.execute()
            except RedisError:  # live extras of a job's answer; the row is the truth and is answered without them
                return JobLive()
        step, _, total = _text(progress).partition("/") if progress else ("", "", "")
        return JobLive(int(place) if place else None, (int(step), int(total)) if progress else None,
                       _latest_preview(latest[0]) if latest and latest[0] else None)

    async def stats(self) -> QueueStats:
        users = await self._redis.zrange(self._p + "line", 0, -1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.lrange(self._p + "wait:" + _text(user), 0, -1)
            pipe.xpending(self._p + "stream", GROUP)
            pipe.mget(self._p + "redeliveries", self._p + "dead_letters")
            results = await pipe.execute(raise_on_error=False)
        by_model: dict[str, int] = {}
        oldest = None
        waiting = 0
        for items in results[:len(users)]:
            for item in items if isinstance(items, list) else ():
                try:
                    job = QueuedJob.decode(_text(item))
                except ValueError:
                    continue
                waiting += 1
                by_model[job.model] = by_model.get(job.model, 0) + 1
                oldest = job.enqueued_at if oldest is None else min(oldest, job.enqueued_at)
        pending = results[len(users)]
        running = pending.get("pending", 0) if isinstance(pending, dict) else 0
        redeliveries, dead = (int(value or 0) for value in results[len(users) + 1])
        return QueueStats(waiting=waiting, waiting_by_model=by_model, oldest_waiting_at=oldest, running=running,
                          redeliveries=redeliveries, dead_letters=dead)

    async def workers(self) -> list[WorkerInfo]:
        cutoff = time.time() - WORKER_EXPIRY_HEARTBEATS * self._heartbeat_secs
        await self._redis.zremrangebyscore(self._p + "workers", "-inf", cutoff)
        ids = [_text(worker_id) for worker_id in await self._redis.zrevrange(self._p + "workers", 0, -1)]
        if not ids:
            return []
        values = await self._redis.mget([self._p + "worker:" + worker_id for worker_id in ids])
        return [WorkerInfo(**json.loads(value)) for value in values if value]

    # Worker side

    def _lease(self, token: Any, encoded: Any) -> Lease | None:
        token, encoded = _text(token), _text(encoded)
        try:
            return Lease(QueuedJob.decode(encoded), token)
        except ValueError:
            log.error("dead letter: stream entry %s is not a job (%r)", token, encoded[:200])
            return None

    async def take(self, worker_id: str, loaded_models: set[str]) -> Lease | None:
        while True:
            reply = await self._run("take", GROUP, worker_id, AFFINITY_LOOKAHEAD_USERS, "\n".join(sorted(loaded_models)))
            if not reply:
                return None
            token, encoded, foreign = reply
            for entry_id in foreign:
                log.error("dead letter: stream entry %s was not added by the queue", _text(entry_id))
            if not token:
                log.error("dead letter: waiting entry %r is not a job", _text(encoded)[:200])
                continue
            lease = self._lease(token, encoded)
            if lease is not None:
                return lease
            await self._run("discard", GROUP, _text(token), "", "not a job entry")

    async def reclaim(self, worker_id: str, idle_secs: float) -> Lease | None:
        while True:
            reply = await self._run("reclaim", GROUP, worker_id, int(idle_secs * 1000))
            if not reply:
                return None
            lease = self._lease(*reply)
            if lease is not None:
                return lease
            await self._run("discard", GROUP, _text(reply[0]), "", "not a job entry")

    async def discard(self, lease: Lease, reason: str) -> None:
        """Send a leased job to the dead letters (it will not be delivered again)."""
        await self._run("discard", GROUP, lease.token, lease.job.job_id, reason)

    async def ack(self, lease: Lease, worker_id: str) -> bool:
        return bool(await self._run("ack", GROUP, worker_id, lease.token, lease.job.job_id))

    async def hand_back(self, lease: Lease, worker_id: str) -> None:
        job = lease.job
        if await self._run("hand_back", GROUP, worker_id, lease.token, job.job_id, job.share, job.encode()):
            await self._redis.publish(self._p + "wake", b"1")

    async def adopt(self, job: QueuedJob, worker_id: str) -> Lease | None:
        token = await self._run("adopt", GROUP, worker_id, job.job_id, job.encode())
        return Lease(job, _text(token)) if token else None

    async def heartbeat(self, worker: WorkerInfo, leases: list[Lease]) -> list[str]:
        worker.heartbeat_at = time.time()
        ttl_ms = int(WORKER_EXPIRY_HEARTBEATS * self._heartbeat_secs * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._p + "worker:" + worker.id, json.dumps(worker.to_json()), px=ttl_ms)
            pipe.zadd(self._p + "workers", {worker.id: worker.heartbeat_at})
            await pipe.execute()
        pairs = [value for lease in leases for value in (lease.token, lease.job.job_id)]
        if not pairs:
            return []
        return [_text(job_id) for job_id in await self._run("renew", GROUP, worker.id, *pairs)]

    async def leave(self, worker_id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._p + "worker:" + worker_id)
            pipe.zrem(self._p + "workers", worker_id)
            await pipe.execute()

    def _ensure_listener(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="job-queue-listener")

    async def _listen(self) -> None:
        """Wake-ups and cancel requests, from every process, on one pub/sub connection."""
        wake, cancel = self._p + "wake", self._p + "cancel"
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(wake, cancel)
                self._wake.set()  # anything published while we were not listening: look once
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message["type"] != "message":
                        continue
                    if _text(message["channel"]) == wake:
                        self._wake.set()
                    else:
                        job_id, keep = _cancel_message(_text(message["data"]))
                        for listener in self._listeners:
                            listener(job_id, keep)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("job queue lost its pub/sub connection (%s); reconnecting", exc)
                await asyncio.sleep(LISTEN_RETRY_SECS)
            finally:
                await pubsub.aclose()

    async def wait_for_work(self, timeout: float) -> None:
        self._ensure_listener()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass
        self._wake.clear()

    def on_cancel(self, listener: CancelListener) -> None:
        self._listeners.append(listener)
        self._ensure_listener()

    async def cancel_requested(self, job_id: str) -> bool:
        return bool(await self._redis.exists(self._p + "cancel:" + job_id))

    async def set_progress(self, job_id: str, step: int, total: int) -> None:
        await self._redis.hset(self._p + "progress", job_id, f"{step}/{total}")

    async def set_preview(self, job_id: str, preview: LatestPreview) -> None:
        # Expires by itself: a job's end does not have to remember it (one more key in the Lua scripts).
        value = msgpack.packb([preview.step, preview.total, preview.mime, preview.image])
        await self._redis.set(self._p + "preview:" + job_id, value, px=PREVIEW_KEPT_MS)

    async def preview(self, job_id: str) -> LatestPreview | None:
        try:
            value = await self._redis.get(self._p + "preview:" + job_id)
        except RedisError:  # a live extra: a watcher waits for the next frame instead
            return None
        return _latest_preview(value) if value else None

    async def readmit(self, jobs: list[QueuedJob]) -> int:
        added = 0
        for job in jobs:
            status, _count = await self._run("admit", job.job_id, job.share, job.encode(), 0, 0, "0")
            added += status == 0
        if added:
            await self._redis.publish(self._p + "wake", b"1")
        return added

    async def lost_state(self) -> bool:
        key = self._p + "epoch"
        if await self._redis.exists(key):
            return False
        return bool(await self._redis.set(key, uuid.uuid4().hex[:12].encode(), nx=True))

    async def known(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        values = await self._redis.hmget(self._p + "jobs", job_ids)
        return {job_id for job_id, value in zip(job_ids, values) if value}

    async def alive_workers(self) -> set[str]:
        return {worker.id for worker in await self.workers()}

    async def try_lock(self, name: str, ttl_secs: float) -> bool:
        return bool(await self._redis.set(self._p + "lock:" + name, b"1", nx=True, px=int(ttl_secs * 1000)))


def _latest_preview(value: bytes) -> LatestPreview:
    step, total, mime, image = msgpack.unpackb(value)
    return LatestPreview(step, total, mime, image)
