// Unit tests of the WebSocket client (src/realtime/socket.ts) against a scripted socket: the cases a
// browser test cannot bring about on purpose (a lost event, a reset, a drop with requests in flight).
//   node --test tests/        (npm run test:unit)
// Node runs no TypeScript, so the module is transpiled with the project's own `typescript` first.

import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { afterEach, beforeEach, test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { decode, encode } from '@msgpack/msgpack'
import ts from 'typescript'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
// Under node_modules so that its imports ('vue', '@msgpack/msgpack') resolve as in the app.
const outDir = join(root, 'node_modules', '.cache', 'va-unit')
mkdirSync(outDir, { recursive: true })
const source = readFileSync(join(root, 'src', 'realtime', 'socket.ts'), 'utf8')
const { outputText } = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
})
writeFileSync(join(outDir, 'socket.mjs'), outputText)
const { RealtimeClient, RealtimeError } = await import(pathToFileURL(join(outDir, 'socket.mjs')).href)

/** A WebSocket the test drives: it records what the client sends and delivers what the test says. */
class ScriptedSocket {
  constructor(url) {
    this.url = url
    this.readyState = 0
    this.sent = []
  }

  send(data) {
    this.sent.push(decode(data))
  }

  close() {
    this.readyState = 3
  }

  /** The server accepts the connection. */
  accept() {
    this.readyState = 1
    this.onopen?.({})
  }

  /** One frame: one event, or several as one msgpack array. */
  receive(...events) {
    const bytes = encode(events.length === 1 ? events[0] : events)
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) })
  }

  /** The connection is lost. */
  lose() {
    this.readyState = 3
    this.onclose?.({ code: 1006 })
  }

  /** What was sent since the last call. */
  take() {
    const sent = this.sent
    this.sent = []
    return sent
  }
}

let sockets
let client

function latest() {
  return sockets.at(-1)
}

/** A listener that records every call. */
function recorder() {
  const calls = []
  return {
    calls,
    events: () => calls.filter((c) => c[0] === 'event').map((c) => [c[1].seq, c[2].replayed]),
    onEvent: (event, meta) => calls.push(['event', event, meta]),
    onSubscribed: (info) => calls.push(['subscribed', info]),
    onReset: (info) => calls.push(['reset', info]),
    onError: (error) => calls.push(['error', error]),
  }
}

const msg = (seq, topic = 'room:a') => ({ type: 'chat.msg', topic, seq, message: { id: seq } })

/** Subscribes to room:a, accepts the socket and acknowledges at `seq`. */
function subscribed(seq, listener = recorder(), options) {
  client.subscribe('room:a', listener, options)
  latest().accept()
  const [sub] = latest().take()
  assert.equal(sub.op, 'sub')
  latest().receive({ type: 'ack', ref: sub.ref, topic: 'room:a', seq })
  return listener
}

beforeEach(() => {
  sockets = []
  client = new RealtimeClient({
    url: () => 'ws://test/ws',
    createSocket: (url) => {
      const socket = new ScriptedSocket(url)
      sockets.push(socket)
      return socket
    },
  })
})

afterEach(() => client.close())

test('connects on first use, with binary frames, and reports its state', () => {
  assert.equal(client.state.value, 'idle')
  client.subscribe('room:a', () => {})
  assert.equal(client.state.value, 'connecting')
  assert.equal(latest().binaryType, 'arraybuffer')
  latest().accept()
  assert.equal(client.state.value, 'open')
  assert.deepEqual(latest().take().map((f) => [f.op, f.topic, 'since' in f]), [['sub', 'room:a', false]])
})

test('an array frame is several events, delivered in order after the ack that starts them', () => {
  const listener = subscribed(5)
  latest().receive(msg(6), msg(7), { type: 'presence', topic: 'room:a', users: [] })
  assert.deepEqual(listener.events(), [[6, false], [7, false], [undefined, false]])
  latest().receive(msg(7))
  assert.equal(listener.events().length, 3, 'a seq already delivered is dropped')
})

test('requests resolve on their ack and reject with the error frame that names their ref', async () => {
  subscribed(0)
  const sending = client.request({ op: 'chat.send', room: 'a', text: 'hi' }, { ref: 'my-ref' })
  const [frame] = latest().take()
  assert.deepEqual(frame, { op: 'chat.send', room: 'a', text: 'hi', ref: 'my-ref' })
  latest().receive({ type: 'ack', ref: 'my-ref', message: { id: 1 } })
  assert.deepEqual((await sending).message, { id: 1 })

  const limited = client.request({ op: 'chat.send', room: 'a', text: 'again' })
  const [second] = latest().take()
  latest().receive({ type: 'error', ref: second.ref, code: 'rate_limited', message: 'Slow down.', data: { retry_after: 7 } })
  await assert.rejects(limited, (err) => err instanceof RealtimeError && err.code === 'rate_limited'
    && err.message === 'Slow down.' && err.retryAfter === 7)
})

test('an error frame without a ref goes to onError listeners', () => {
  subscribed(0)
  const seen = []
  client.onError((err) => seen.push(err.code))
  latest().receive({ type: 'error', code: 'not_subscribed', message: 'Subscribe first.' })
  assert.deepEqual(seen, ['not_subscribed'])
})

test('a gap in seq resubscribes with since, and the lost events arrive once, in order', () => {
  const listener = subscribed(5)
  latest().receive(msg(6))
  latest().receive(msg(8)) // 7 was lost on the way
  const [unsub, sub] = latest().take()
  assert.deepEqual([unsub.op, sub.op, sub.since], ['unsub', 'sub', 6])
  latest().receive(msg(9)) // still from the old subscription, before the new ack: the replay brings it
  latest().receive({ type: 'ack', ref: sub.ref, topic: 'room:a', seq: 9 }, msg(7), msg(8), msg(9))
  latest().receive(msg(10))
  assert.deepEqual(listener.events(), [[6, false], [7, true], [8, true], [9, true], [10, false]])
})

test('after a drop: subscriptions resume from the last seq, retried requests go out again, others fail', async () => {
  const listener = subscribed(5)
  latest().receive(msg(6))
  const retried = client.request({ op: 'chat.send', room: 'a', text: 'keep me' }, { ref: 'keep', retry: true })
  const lost = client.request({ op: 'ping' })
  latest().take()

  latest().lose()
  assert.equal(client.state.value, 'reconnecting')
  assert.ok(client.nextRetryAt.value > Date.now(), 'a reconnect is scheduled')
  await assert.rejects(lost, (err) => err.code === 'disconnected')

  client.reconnect() // instead of waiting for the backoff
  latest().accept()
  const frames = latest().take()
  assert.deepEqual(frames.map((f) => [f.op, f.since ?? null, f.ref === 'keep']), [
    ['sub', 6, false], // subscriptions first: chat.send needs the room subscribed on this socket
    ['chat.send', null, true], // the same ref, so the server stores it once
  ])
  // Missed: 7 and 9 (8 was sent and deleted while away, so the replay skips it); then live 10.
  latest().receive({ type: 'ack', ref: frames[0].ref, topic: 'room:a', seq: 9 }, msg(7), msg(9))
  latest().receive(msg(10))
  latest().receive({ type: 'ack', ref: 'keep', message: { id: 99 } })
  assert.deepEqual((await retried).message, { id: 99 })
  assert.deepEqual(listener.events(), [[6, false], [7, true], [9, true], [10, false]])
  assert.deepEqual(listener.calls.filter((c) => c[0] === 'subscribed').map((c) => c[1]), [
    { seq: 5, resumed: false },
    { seq: 9, resumed: true },
  ])
})

test('reset: the listener reloads, and live events continue from the reset seq', () => {
  const listener = subscribed(5)
  latest().receive({ type: 'reset', topic: 'room:a', epoch: 'e2', seq: 50 })
  latest().receive(msg(51))
  assert.deepEqual(listener.calls.filter((c) => c[0] === 'reset').map((c) => c[1]), [{ seq: 50, epoch: 'e2' }])
  assert.deepEqual(listener.events(), [[51, false]])
})

test('a live reset to seq 0 (Redis restarted: a new epoch) lets the new history through from seq 1', () => {
  const listener = subscribed(57)
  latest().receive(msg(58))
  latest().receive({ type: 'reset', topic: 'room:a', epoch: 'e3', seq: 0 })
  latest().receive(msg(1))
  latest().receive(msg(2))
  assert.deepEqual(listener.calls.filter((c) => c[0] === 'reset').map((c) => c[1]), [{ seq: 0, epoch: 'e3' }])
  assert.deepEqual(listener.events(), [[58, false], [1, false], [2, false]])
  assert.deepEqual(latest().take(), [])  // nothing counted as lost: no resubscription
})

test('a topic whose seq went backwards (its store was wiped) counts as a reset', () => {
  const listener = recorder()
  client.subscribe('room:a', listener, { since: 40 })
  latest().accept()
  const [sub] = latest().take()
  assert.equal(sub.since, 40)
  latest().receive({ type: 'ack', ref: sub.ref, topic: 'room:a', seq: 3 })
  latest().receive(msg(4))
  assert.equal(listener.calls.filter((c) => c[0] === 'reset').length, 1)
  assert.deepEqual(listener.events(), [[4, false]])
})

test('a first subscription with since replays history, not "missed" events', () => {
  const listener = subscribed(4, recorder(), { since: 2 })
  latest().receive(msg(3), msg(4), msg(5))
  assert.deepEqual(listener.events(), [[3, false], [4, false], [5, false]])
})

test('listeners share one server subscription; the last one to leave unsubscribes', () => {
  const first = subscribed(0)
  const second = recorder()
  const sub = client.subscribe('room:a', second)
  assert.deepEqual(latest().take(), [], 'no second sub frame')
  latest().receive(msg(1))
  assert.equal(first.events().length, 1)
  assert.equal(second.events().length, 1)
  sub.unsubscribe()
  assert.deepEqual(latest().take(), [])
  client.subscribe('room:b', () => {}).unsubscribe()
  latest().take()
  client.close()
  assert.equal(client.state.value, 'idle')
})

test('a refused subscription reaches onError', () => {
  const listener = recorder()
  client.subscribe('user:2', listener)
  latest().accept()
  const [sub] = latest().take()
  latest().receive({ type: 'error', ref: sub.ref, code: 'forbidden', message: 'Not yours.' })
  const errors = listener.calls.filter((c) => c[0] === 'error').map((c) => c[1].code)
  assert.deepEqual(errors, ['forbidden'])
})

test('resubscribe: a topic the server subscribed on its own (gen.submit) is unsubscribed first, so since replays it', () => {
  subscribed(0) // the socket is open
  const job = recorder()
  // The server subscribed the socket to job:7 with the submit and sent seq 1 before its ack: nobody listened.
  latest().receive({ type: 'ack', topic: 'job:7', seq: 1 }, { type: 'gen.queued', topic: 'job:7', seq: 1, place: 1 })
  client.subscribe('job:7', job, { since: 0, resubscribe: true })
  const frames = latest().take()
  assert.deepEqual(frames.map((f) => [f.op, f.topic, f.since]), [['unsub', 'job:7', undefined], ['sub', 'job:7', 0]])
  latest().receive({ type: 'ack', topic: 'job:7' }, { type: 'ack', ref: frames[1].ref, topic: 'job:7', seq: 1 },
    { type: 'gen.queued', topic: 'job:7', seq: 1, place: 1 }, { type: 'gen.started', topic: 'job:7', seq: 2 })
  assert.deepEqual(job.events(), [[1, false], [2, false]])
  // Unsequenced events (previews) reach the listener too.
  latest().receive({ type: 'gen.preview', topic: 'job:7', step: 1 })
  assert.equal(job.calls.filter((c) => c[0] === 'event').length, 3)
})

test('resubscribe before the socket is open sends only the sub (a new socket has no subscriptions)', () => {
  client.subscribe('job:8', () => {}, { since: 0, resubscribe: true })
  latest().accept()
  assert.deepEqual(latest().take().map((f) => [f.op, f.topic, f.since]), [['sub', 'job:8', 0]])
})
