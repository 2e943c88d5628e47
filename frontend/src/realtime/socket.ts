/**
 * The app's one WebSocket (`/ws`, docs/PROTOCOL.md): binary msgpack frames, requests answered by
 * `ref`, and topic subscriptions that survive reconnects without losing or repeating events.
 *
 * Chat, live generation previews and notifications all ride on the shared `realtime` client:
 *
 *   const sub = realtime.subscribe('job:42', { onEvent: (ev) => …, onReset: () => reload() })
 *   const ack = await realtime.request({ op: 'chat.send', room, text }, { ref, retry: true })
 *   realtime.send({ op: 'typing', room })          // fire and forget, no reply expected
 *   realtime.state.value                           // 'idle' | 'connecting' | 'open' | 'reconnecting'
 *   sub.unsubscribe()
 *
 * Sequenced topic events reach listeners once and in order: the client keeps the last `seq` per
 * topic, re-subscribes with `since` after a reconnect (the server replays what was missed), and
 * re-subscribes the same way when a live event skips a number.
 */

import { decode, encode } from '@msgpack/msgpack'
import { readonly, ref, type Ref } from 'vue'

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting'

/** Any event the server sends (`type` plus the fields of that type). */
export interface ServerEvent {
  type: string
  topic?: string
  seq?: number
  ref?: string | number
  [field: string]: unknown
}

/** A client op: `op` plus its fields; `ref` is added by `request`. */
export interface ClientOp {
  op: string
  [field: string]: unknown
}

/** An `error` frame answering a request, or the connection failing under it. */
export class RealtimeError extends Error {
  /** The server's code (`rate_limited`, `forbidden`…), or `disconnected` / `timeout` from the client. */
  readonly code: string
  /** Seconds, for `rate_limited`. */
  readonly retryAfter: number | null
  /** The input the server named (`data.field`), when the error is about one. */
  readonly field: string | null

  constructor(code: string, message: string, retryAfter: number | null = null, field: string | null = null) {
    super(message)
    this.name = 'RealtimeError'
    this.code = code
    this.retryAfter = retryAfter
    this.field = field
  }
}

export interface EventMeta {
  /** The event was missed while the socket was away (or lost on the way) and replayed by the server. */
  replayed: boolean
}

export interface TopicListener<E extends ServerEvent = ServerEvent> {
  /** Every event of the topic; sequenced ones exactly once and in `seq` order. */
  onEvent(event: E, meta: EventMeta): void
  /** The server acknowledged a (re)subscription; `seq` is the topic's current seq. */
  onSubscribed?(info: { seq: number; resumed: boolean }): void
  /** What was missed is older than the history kept: reload the topic's state (e.g. over HTTP). */
  onReset?(info: { seq: number; epoch: string }): void
  /** The subscription was refused (`forbidden`, `bad_topic`…). It is tried again after a reconnect. */
  onError?(error: RealtimeError): void
}

export interface Subscription {
  readonly topic: string
  unsubscribe(): void
}

export interface SubscribeOptions {
  /** The last seq already known (e.g. from history loaded over HTTP): later events are replayed. */
  since?: number
  /**
   * The server may have subscribed this socket to the topic on its own (`gen.submit` does, before
   * its ack reaches us, so the events it replayed found no listener): send `unsub` first, so that
   * this `sub` is not answered as a duplicate and `since` is honoured.
   */
  resubscribe?: boolean
}

export interface RequestOptions {
  /** Echoed by the server; give a unique one to make a retried op idempotent (chat.send). */
  ref?: string
  /** Milliseconds before the promise rejects with `timeout`. */
  timeoutMs?: number
  /**
   * Re-send after a reconnect instead of rejecting with `disconnected` (only for ops the server
   * de-duplicates by `ref`, such as chat.send).
   */
  retry?: boolean
}

export interface RealtimeOptions {
  /** Where to connect; defaults to `/ws` on this page's host (ws: or wss: like the page). */
  url?: () => string
  /** Injected in tests. */
  createSocket?: (url: string) => WebSocket
}

// Reconnect delays double from the first to the cap; each is drawn between half and all of it,
// so tabs dropped together by a server restart do not come back together.
const RECONNECT_FIRST_DELAY_MS = 500
const RECONNECT_MAX_DELAY_MS = 10_000
// A connection that stayed open this long was healthy: the next drop starts again from the first delay.
const STABLE_CONNECTION_MS = 5_000
// The server pings every 20 s at the WebSocket level, which browsers answer without telling pages;
// an app-level ping lets the page notice a dead connection (laptop lid, lost Wi-Fi) on its own.
const KEEPALIVE_INTERVAL_MS = 25_000
const KEEPALIVE_TIMEOUT_MS = 10_000
const DEFAULT_REQUEST_TIMEOUT_MS = 15_000
const CLOSE_NORMAL = 1000
// WebSocket.CONNECTING and WebSocket.OPEN, without needing the global (absent in unit tests on Node 20).
const SOCKET_CONNECTING = 0
const SOCKET_OPEN = 1

interface PendingRequest {
  ref: string
  frame: ClientOp
  retry: boolean
  /** Settles synchronously with the reply, so that events behind it in the same frame see its effect. */
  settle(reply: ServerEvent | RealtimeError): void
  timer: ReturnType<typeof setTimeout> | null
}

interface TopicState {
  topic: string
  listeners: Set<TopicListener>
  /** The highest seq delivered (or the `since` we asked for); null before the first ack. */
  lastSeq: number | null
  /**
   * The seq from the current subscription's ack: events up to it are a replay, which may skip
   * numbers (a message sent and deleted while away is left out); past it seqs must be consecutive.
   */
  floor: number | null
  /** Acknowledged on the current socket. */
  subscribed: boolean
  /** Acknowledged once before: a later subscription is a resume, and what it replays was missed. */
  everSubscribed: boolean
  /** The current subscription resumes after a drop or a gap (its replayed events were missed). */
  resuming: boolean
}

function defaultUrl(): string {
  const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${scheme}//${window.location.host}/ws`
}

/** Random, unique across tabs and reloads (the server keys chat.send retries on it); no secure context needed. */
export function newRef(): string {
  const bytes = new Uint8Array(12)
  crypto.getRandomValues(bytes)
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')
}

export class RealtimeClient {
  /** Reactive: for banners and status dots. */
  readonly state: Readonly<Ref<ConnectionState>>
  /** Reactive: when the next reconnect attempt is due (ms since the epoch), or null. */
  readonly nextRetryAt: Readonly<Ref<number | null>>

  private readonly stateRef = ref<ConnectionState>('idle')
  private readonly nextRetryAtRef = ref<number | null>(null)
  private readonly url: () => string
  private readonly createSocket: (url: string) => WebSocket
  private socket: WebSocket | null = null
  private attempt = 0
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null
  private stableTimer: ReturnType<typeof setTimeout> | null = null
  private keepaliveTimer: ReturnType<typeof setInterval> | null = null
  private readonly topics = new Map<string, TopicState>()
  /** Sent and waiting for a reply, by ref. */
  private readonly inFlight = new Map<string, PendingRequest>()
  /** Waiting for the socket to open. */
  private queue: PendingRequest[] = []
  private readonly errorListeners = new Set<(error: RealtimeError) => void>()
  private refCounter = 0
  private readonly refPrefix = newRef().slice(0, 8)
  private windowEventsBound = false

  constructor(options: RealtimeOptions = {}) {
    this.url = options.url ?? defaultUrl
    this.createSocket = options.createSocket ?? ((url) => new WebSocket(url))
    this.state = readonly(this.stateRef)
    this.nextRetryAt = readonly(this.nextRetryAtRef)
  }

  // --- public API -------------------------------------------------------------------------

  /** Opens the socket if it is not open or opening; called for you by subscribe/request/send. */
  connect(): void {
    this.bindWindowEvents()
    if (this.socket || this.reconnectTimer) return
    this.open()
  }

  /**
   * Drops the socket and opens a new one now, e.g. when the user logs in or out (the cookie
   * decides who the socket is). Subscriptions resume; requests marked `retry` are re-sent.
   */
  reconnect(): void {
    if (this.stateRef.value === 'idle' && !this.socket) return // never used: nothing to renew
    this.attempt = 0
    this.clearReconnectTimer()
    this.drop()
    this.stateRef.value = 'connecting' // on purpose, so not worth a "reconnecting" banner
    this.open()
  }

  /**
   * Closes the socket for good (until the next subscribe/request): no reconnect, every waiting
   * request rejects with `closed`, and topic state is forgotten.
   */
  close(): void {
    this.clearReconnectTimer()
    this.topics.clear()
    this.drop()
    const waiting = this.queue
    this.queue = []
    for (const pending of waiting) pending.settle(new RealtimeError('closed', 'The connection was closed.'))
    this.stateRef.value = 'idle'
    this.attempt = 0
  }

  /** Listen to a topic; the server subscription is shared by every listener of that topic. */
  subscribe<E extends ServerEvent = ServerEvent>(
    topic: string,
    listener: TopicListener<E> | ((event: E, meta: EventMeta) => void),
    options: SubscribeOptions = {},
  ): Subscription {
    const normalised = (typeof listener === 'function' ? { onEvent: listener } : listener) as TopicListener
    let state = this.topics.get(topic)
    if (!state) {
      state = {
        topic, listeners: new Set(), lastSeq: options.since ?? null, floor: null,
        subscribed: false, everSubscribed: false, resuming: false,
      }
      this.topics.set(topic, state)
      if (this.stateRef.value === 'open') {
        // A socket opened later starts with no subscriptions, so only the current one needs this.
        if (options.resubscribe) this.write({ op: 'unsub', topic })
        this.sendSub(state)
      }
    }
    state.listeners.add(normalised)
    this.connect()
    const owner = state
    return {
      topic,
      unsubscribe: () => {
        owner.listeners.delete(normalised)
        if (owner.listeners.size === 0 && this.topics.get(topic) === owner) {
          this.topics.delete(topic)
          if (this.stateRef.value === 'open') this.write({ op: 'unsub', topic })
        }
      },
    }
  }

  /** Sends an op and resolves with its `ack` (or `pong`); rejects with the `error` frame as RealtimeError. */
  request<R extends ServerEvent = ServerEvent>(op: ClientOp, options: RequestOptions = {}): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.enqueue(op, options, (reply) => {
        if (reply instanceof RealtimeError) reject(reply)
        else resolve(reply as R)
      })
    })
  }

  /** Sends an op that has no reply (`typing`); dropped when the socket is not open. */
  send(op: ClientOp): void {
    this.connect()
    if (this.stateRef.value === 'open') this.write(op)
  }

  /** `error` frames that answer no request (e.g. an op sent with `send`). Returns a remover. */
  onError(listener: (error: RealtimeError) => void): () => void {
    this.errorListeners.add(listener)
    return () => this.errorListeners.delete(listener)
  }

  /** The last seq delivered on a topic (null when unknown). */
  lastSeq(topic: string): number | null {
    return this.topics.get(topic)?.lastSeq ?? null
  }

  // --- connection ---------------------------------------------------------------------------

  private open(): void {
    this.nextRetryAtRef.value = null
    if (this.stateRef.value !== 'reconnecting') this.stateRef.value = 'connecting'
    let socket: WebSocket
    try {
      socket = this.createSocket(this.url())
    } catch {
      this.scheduleReconnect()
      return
    }
    socket.binaryType = 'arraybuffer'
    this.socket = socket
    socket.onopen = () => this.onOpen(socket)
    socket.onmessage = (event) => this.onMessage(socket, event)
    socket.onclose = () => this.onClose(socket)
    // A failed socket is always followed by `close`; nothing else to do here.
    socket.onerror = () => {}
  }

  private onOpen(socket: WebSocket): void {
    if (socket !== this.socket) return
    this.stateRef.value = 'open'
    this.stableTimer = setTimeout(() => {
      this.attempt = 0
    }, STABLE_CONNECTION_MS)
    this.keepaliveTimer = setInterval(() => this.keepalive(), KEEPALIVE_INTERVAL_MS)
    // Subscriptions first: ops such as chat.send need the room subscribed on this socket.
    for (const state of this.topics.values()) this.sendSub(state)
    const queued = this.queue
    this.queue = []
    for (const pending of queued) this.transmit(pending)
  }

  private onClose(socket: WebSocket): void {
    if (socket !== this.socket) return
    this.drop()
    this.scheduleReconnect()
  }

  /** Forgets the current socket: topics become unsubscribed, in-flight requests fail or wait for a retry. */
  private drop(): void {
    const socket = this.socket
    this.socket = null
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null
      if (socket.readyState === SOCKET_OPEN || socket.readyState === SOCKET_CONNECTING) {
        socket.close(CLOSE_NORMAL, 'client reconnecting')
      }
    }
    if (this.stableTimer) clearTimeout(this.stableTimer)
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer)
    this.stableTimer = this.keepaliveTimer = null
    for (const state of this.topics.values()) {
      state.subscribed = false
      state.floor = null
    }
    const inFlight = [...this.inFlight.values()]
    this.inFlight.clear()
    for (const pending of inFlight) {
      if (pending.retry) {
        this.queue.push(pending)
      } else {
        pending.settle(new RealtimeError('disconnected', 'The connection was lost before the server answered.'))
      }
    }
    if (this.stateRef.value !== 'idle') this.stateRef.value = 'reconnecting'
  }

  private scheduleReconnect(): void {
    this.clearReconnectTimer()
    this.stateRef.value = 'reconnecting'
    const ceiling = Math.min(RECONNECT_MAX_DELAY_MS, RECONNECT_FIRST_DELAY_MS * 2 ** this.attempt)
    // Offline, trying often is pointless: the `online` event reconnects at once anyway.
    const offline = typeof navigator !== 'undefined' && navigator.onLine === false
    const delay = offline ? RECONNECT_MAX_DELAY_MS : ceiling * (0.5 + Math.random() / 2)
    this.attempt = Math.min(this.attempt + 1, 16)
    this.nextRetryAtRef.value = Date.now() + delay
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null
      this.open()
    }, delay)
  }

  private clearReconnectTimer(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    this.nextRetryAtRef.value = null
  }

  private bindWindowEvents(): void {
    if (this.windowEventsBound || typeof window === 'undefined') return
    this.windowEventsBound = true
    // The browser knows before the socket does: drop at once, and come back as soon as the network does.
    window.addEventListener('offline', () => {
      if (this.socket) {
        this.drop()
        this.scheduleReconnect()
      }
    })
    window.addEventListener('online', () => {
      if (this.stateRef.value === 'reconnecting') this.reconnect()
    })
  }

  private keepalive(): void {
    const socket = this.socket
    this.enqueue({ op: 'ping' }, { timeoutMs: KEEPALIVE_TIMEOUT_MS }, (reply) => {
      if (reply instanceof RealtimeError && reply.code === 'timeout' && socket === this.socket) {
        this.drop()
        this.scheduleReconnect()
      }
    })
  }

  // --- requests -----------------------------------------------------------------------------

  private enqueue(op: ClientOp, options: RequestOptions, settle: (reply: ServerEvent | RealtimeError) => void): void {
    const pending: PendingRequest = {
      ref: options.ref ?? `${this.refPrefix}-${++this.refCounter}`,
      frame: op,
      retry: options.retry ?? false,
      timer: null,
      settle: (reply) => {
        if (pending.timer) clearTimeout(pending.timer)
        pending.timer = null
        this.inFlight.delete(pending.ref)
        this.queue = this.queue.filter((p) => p !== pending)
        settle(reply)
      },
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    pending.timer = setTimeout(
      () => pending.settle(new RealtimeError('timeout', 'The server did not answer in time.')),
      timeoutMs,
    )
    this.connect()
    if (this.stateRef.value === 'open') this.transmit(pending)
    else this.queue.push(pending)
  }

  private transmit(pending: PendingRequest): void {
    this.inFlight.set(pending.ref, pending)
    this.write({ ...pending.frame, ref: pending.ref })
  }

  private write(op: ClientOp): void {
    try {
      this.socket?.send(encode(op))
    } catch {
      // Closing under us: onclose follows and deals with what was in flight.
    }
  }

  // --- incoming -----------------------------------------------------------------------------

  private onMessage(socket: WebSocket, message: MessageEvent): void {
    if (socket !== this.socket || !(message.data instanceof ArrayBuffer)) return
    let decoded: unknown
    try {
      decoded = decode(new Uint8Array(message.data))
    } catch {
      return // not ours to fix; the server never sends this
    }
    // Several events waiting for the same socket arrive as one array frame.
    const events = Array.isArray(decoded) ? decoded : [decoded]
    for (const event of events) {
      if (event && typeof event === 'object' && typeof (event as ServerEvent).type === 'string') {
        this.dispatch(event as ServerEvent)
      }
    }
  }

  private dispatch(event: ServerEvent): void {
    const pending = event.ref != null ? this.inFlight.get(String(event.ref)) : undefined
    if (event.type === 'error') {
      const data = (event.data ?? {}) as Record<string, unknown>
      const error = new RealtimeError(
        String(event.code ?? 'error'),
        String(event.message ?? ''),
        typeof data.retry_after === 'number' ? data.retry_after : null,
        typeof data.field === 'string' ? data.field : null,
      )
      if (pending) pending.settle(error)
      else for (const listener of this.errorListeners) listener(error)
      return
    }
    if (pending && (event.type === 'ack' || event.type === 'pong')) {
      pending.settle(event)
      return
    }
    if (typeof event.topic === 'string' && event.type !== 'ack') this.onTopicEvent(event)
  }

  private sendSub(state: TopicState): void {
    state.subscribed = false
    state.floor = null
    const since = state.lastSeq
    state.resuming = state.everSubscribed && since !== null
    const op: ClientOp = since === null ? { op: 'sub', topic: state.topic } : { op: 'sub', topic: state.topic, since }
    this.enqueue(op, {}, (reply) => {
      if (this.topics.get(state.topic) !== state) return // unsubscribed meanwhile
      if (reply instanceof RealtimeError) {
        if (reply.code !== 'disconnected') for (const l of state.listeners) l.onError?.(reply)
        return
      }
      const seq = typeof reply.seq === 'number' ? reply.seq : 0
      state.subscribed = true
      state.everSubscribed = true
      state.floor = seq
      if (since === null) {
        state.lastSeq = seq
      } else if (seq < since) {
        // The topic went backwards (its store was wiped): what we hold is not theirs any more.
        this.applyReset(state, seq, '')
      }
      for (const l of state.listeners) l.onSubscribed?.({ seq, resumed: state.resuming })
    })
  }

  /** Subscribes again on the same socket, asking for everything after the last seq delivered. */
  private resync(state: TopicState): void {
    state.subscribed = false
    this.write({ op: 'unsub', topic: state.topic })
    this.sendSub(state)
  }

  private applyReset(state: TopicState, seq: number, epoch: string): void {
    state.lastSeq = seq
    state.floor = seq
    for (const l of state.listeners) l.onReset?.({ seq, epoch })
  }

  private onTopicEvent(event: ServerEvent): void {
    const state = this.topics.get(event.topic!)
    if (!state) return
    if (event.type === 'reset') {
      this.applyReset(state, typeof event.seq === 'number' ? event.seq : 0, String(event.epoch ?? ''))
      return
    }
    let replayed = false
    if (typeof event.seq === 'number') {
      const seq = event.seq
      // Between a (re)subscription and its ack nothing is known about the order: the replay brings it.
      if (!state.subscribed || state.lastSeq === null || state.floor === null) return
      if (seq <= state.lastSeq) return // already delivered (a replay overlapping live events)
      if (seq <= state.floor) {
        replayed = state.resuming
      } else if (seq !== Math.max(state.lastSeq, state.floor) + 1) {
        // An event was lost on the way. The replay up to the floor was complete (the server sends
        // it before any live event), so ask for everything after whichever is later.
        state.lastSeq = Math.max(state.lastSeq, state.floor)
        this.resync(state)
        return
      }
      state.lastSeq = seq
    }
    for (const listener of [...state.listeners]) {
      try {
        listener.onEvent(event, { replayed })
      } catch (err) {
        console.error('realtime listener failed', err)
      }
    }
  }
}

/** The app's one connection. */
export const realtime = new RealtimeClient()

/** For components: the shared client. */
export function useRealtime(): RealtimeClient {
  return realtime
}
