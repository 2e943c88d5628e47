/**
 * One chat room's state for ChatPanel: history over HTTP, live changes over the shared socket,
 * presence, typing, and messages on their way out.
 *
 * The newest page is loaded first, then `room:<name>` is subscribed with `since` set to the newest
 * seq in it, so whatever changed in between is replayed rather than lost; messages are merged by
 * id and a copy never replaces a newer one (the higher `seq` wins).
 */

import { computed, onScopeDispose, reactive, ref, shallowRef, watch, type Ref } from 'vue'
import { deleteMessage, editMessage, fetchMessages, fetchPresence, roomTopic, sendMessage, sendTyping } from '@/api/rooms'
import type { ChatMessage, PublicUser } from '@/api/types'
import { newRef, realtime, RealtimeError, type ServerEvent, type Subscription } from '@/realtime/socket'

/** How long "alice is typing…" stays up after her last typing event. */
export const TYPING_SHOWN_MS = 4_000
/** Typing events go out at most this often while the user types. */
export const TYPING_SEND_INTERVAL_MS = 2_000
/** A message on its way out is given this long (reconnects included) before it shows as not sent. */
const SEND_TIMEOUT_MS = 30_000

export interface PendingMessage {
  /** Sent as the op's `ref`: a retry with it is stored once. */
  ref: string
  text: string
  /** An uploaded photo the message carries (`/stylize`), kept for a retry. */
  photo: string | null
  status: 'sending' | 'failed'
  error: RealtimeError | null
}

interface TypingEntry {
  user: PublicUser
  until: number
}

interface ChatEvent extends ServerEvent {
  message?: ChatMessage
  users?: PublicUser[]
  user?: PublicUser
}

/** `onOther`: the room topic's other events (e.g. `post.likes` beside a post), for the page around the chat. */
export function useChatRoom(room: Ref<string>, me: Ref<PublicUser | null>, onOther?: (event: ServerEvent) => void) {
  /** Oldest first. */
  const messages = ref<ChatMessage[]>([])
  const pending = ref<PendingMessage[]>([])
  const presence = ref<PublicUser[]>([])
  const typingEntries = ref<TypingEntry[]>([])
  const loading = ref(false)
  const loadError = ref<unknown>(null)
  const loadingOlder = ref(false)
  /** `before` for the next older page; null once the start of the room is loaded. */
  const cursor = ref<number | null>(null)
  /** Messages missed while the socket was away, replayed after it came back. */
  const filledIn = ref(0)
  /** The history was too far behind to replay and was reloaded. */
  const reloaded = ref(false)
  /** The last failure of an op (send, edit, delete), for an inline message. */
  const lastError = shallowRef<RealtimeError | null>(null)

  /** Ids deleted while loaded, so a late copy does not bring one back. */
  const deleted = new Set<number>()
  let subscription: Subscription | null = null
  let socketPresence = false
  let lastTypingSent = 0
  let generation = 0
  let typingTimer: ReturnType<typeof setInterval> | null = null

  const hasOlder = computed(() => cursor.value !== null)
  const typingUsers = computed(() => typingEntries.value.map((entry) => entry.user))

  function indexOf(id: number): number {
    return messages.value.findIndex((m) => m.id === id)
  }

  /** Adds or updates a message; ignores stale copies and messages older than the loaded window. */
  function upsert(message: ChatMessage): void {
    if (message.deleted) {
      remove(message.id)
      return
    }
    if (deleted.has(message.id)) return
    const list = messages.value
    const at = indexOf(message.id)
    if (at >= 0) {
      if (message.seq >= list[at]!.seq) list[at] = message
      return
    }
    // An edit of a message above the loaded page: it shows up in place when that page is loaded.
    if (hasOlder.value && list.length && message.id < list[0]!.id) return
    let insertAt = list.length
    while (insertAt > 0 && list[insertAt - 1]!.id > message.id) insertAt--
    list.splice(insertAt, 0, message)
  }

  function remove(id: number): void {
    deleted.add(id)
    const at = indexOf(id)
    if (at >= 0) messages.value.splice(at, 1)
  }

  function onEvent(event: ChatEvent, meta: { replayed: boolean }): void {
    switch (event.type) {
      case 'chat.msg':
        if (!event.message) return
        if (meta.replayed && indexOf(event.message.id) < 0) filledIn.value++
        upsert(event.message)
        stopTyping(event.message.author.id)
        return
      case 'chat.edited':
        if (event.message) upsert(event.message)
        return
      case 'chat.deleted':
        if (event.message) remove(event.message.id)
        return
      case 'presence':
        if (Array.isArray(event.users)) {
          presence.value = event.users
          socketPresence = true
        }
        return
      case 'typing':
        if (event.user && event.user.id !== me.value?.id) startTyping(event.user)
        return
      default:
        onOther?.(event)
    }
  }

  function startTyping(user: PublicUser): void {
    const until = Date.now() + TYPING_SHOWN_MS
    const entry = typingEntries.value.find((e) => e.user.id === user.id)
    if (entry) entry.until = until
    else typingEntries.value.push({ user, until })
    typingTimer ??= setInterval(pruneTyping, 500)
  }

  function stopTyping(userId: number): void {
    typingEntries.value = typingEntries.value.filter((e) => e.user.id !== userId)
  }

  function pruneTyping(): void {
    const now = Date.now()
    if (typingEntries.value.some((e) => e.until <= now)) {
      typingEntries.value = typingEntries.value.filter((e) => e.until > now)
    }
    if (!typingEntries.value.length && typingTimer) {
      clearInterval(typingTimer)
      typingTimer = null
    }
  }

  /** The newest page, replacing what is shown (first load, and after a `reset`). */
  async function loadLatest(name: string, run: number): Promise<number | null> {
    loading.value = true
    loadError.value = null
    try {
      const page = await fetchMessages(name)
      if (run !== generation) return null
      messages.value = page.messages.filter((m) => !m.deleted && !deleted.has(m.id)).reverse()
      cursor.value = page.next_cursor
      return page.messages.reduce((max, m) => Math.max(max, m.seq), 0)
    } catch (err) {
      if (run === generation) loadError.value = err
      return null
    } finally {
      if (run === generation) loading.value = false
    }
  }

  async function start(name: string): Promise<void> {
    const run = ++generation
    stop()
    messages.value = []
    pending.value = []
    presence.value = []
    typingEntries.value = []
    cursor.value = null
    filledIn.value = 0
    reloaded.value = false
    lastError.value = null
    deleted.clear()
    socketPresence = false
    fetchPresence(name).then(
      (users) => {
        if (run === generation && !socketPresence) presence.value = users
      },
      () => {}, // the socket brings presence as well
    )
    const newestSeq = await loadLatest(name, run)
    if (run !== generation) return
    // Everything after the newest message loaded is replayed; without history only live events come.
    subscription = realtime.subscribe<ChatEvent>(roomTopic(name), {
      onEvent,
      onSubscribed: ({ resumed }) => {
        if (resumed) filledIn.value = 0
      },
      onReset: () => {
        reloaded.value = true
        void loadLatest(name, run)
      },
      onError: (err) => {
        loadError.value = err
      },
    }, newestSeq === null ? {} : { since: newestSeq })
  }

  function stop(): void {
    subscription?.unsubscribe()
    subscription = null
    if (typingTimer) clearInterval(typingTimer)
    typingTimer = null
  }

  /** The page before the oldest loaded message. */
  async function loadOlder(): Promise<boolean> {
    if (loadingOlder.value || cursor.value === null) return false
    const run = generation
    loadingOlder.value = true
    try {
      const page = await fetchMessages(room.value, cursor.value)
      if (run !== generation) return false
      cursor.value = page.next_cursor
      const older = page.messages.filter((m) => !deleted.has(m.id) && indexOf(m.id) < 0).reverse()
      messages.value.unshift(...older)
      return older.length > 0
    } catch (err) {
      if (run === generation) loadError.value = err
      return false
    } finally {
      if (run === generation) loadingOlder.value = false
    }
  }

  function retryLoad(): void {
    void start(room.value)
  }

  /** Queues a message; it goes out now, or after a reconnect (same ref: stored once either way). */
  function send(text: string, photo: string | null = null): void {
    const entry = reactive<PendingMessage>({ ref: newRef(), text, photo, status: 'sending', error: null })
    pending.value.push(entry)
    void deliver(entry)
  }

  async function deliver(entry: PendingMessage): Promise<void> {
    const run = generation
    entry.status = 'sending'
    entry.error = null
    lastError.value = null
    try {
      const stored = await sendMessage(room.value, entry.text, entry.ref, SEND_TIMEOUT_MS, entry.photo)
      if (run !== generation) return
      pending.value = pending.value.filter((p) => p.ref !== entry.ref)
      if (stored) upsert(stored)
    } catch (err) {
      if (run !== generation) return
      entry.status = 'failed'
      entry.error = err instanceof RealtimeError ? err : new RealtimeError('error', String(err))
      lastError.value = entry.error
    }
  }

  function retry(ref: string): void {
    const entry = pending.value.find((p) => p.ref === ref)
    if (entry && entry.status === 'failed') void deliver(entry)
  }

  function discard(ref: string): void {
    pending.value = pending.value.filter((p) => p.ref !== ref)
    if (!pending.value.some((p) => p.status === 'failed')) lastError.value = null
  }

  async function edit(id: number, text: string): Promise<void> {
    const stored = await editMessage(room.value, id, text)
    if (stored) upsert(stored)
  }

  async function destroy(id: number): Promise<void> {
    await deleteMessage(room.value, id)
    remove(id)
  }

  /** Call on input: tells the room at most every TYPING_SEND_INTERVAL_MS. */
  function typing(): void {
    const now = Date.now()
    if (now - lastTypingSent < TYPING_SEND_INTERVAL_MS || realtime.state.value !== 'open') return
    lastTypingSent = now
    sendTyping(room.value)
  }

  watch(room, (name) => void start(name), { immediate: true })
  onScopeDispose(() => {
    generation++
    stop()
  })

  return {
    messages, pending, presence, typingUsers, loading, loadError, loadingOlder, hasOlder,
    filledIn, reloaded, lastError,
    loadOlder, retryLoad, send, retry, discard, edit, destroy, typing,
  }
}
