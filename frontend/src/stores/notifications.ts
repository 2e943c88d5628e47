/**
 * My notifications: the first page and the unread count over HTTP, then live `notify` (a new one; a post's
 * grouped likes name the one it `replaces`), `notify.read` (marked read, maybe in another tab) and
 * `notify.changed` (the quoted message was edited), `notify.removed` (its message deleted or hidden, or the mention edited out) on `user:<id>` through the shared socket.
 * Follows the session: signing out forgets them, signing in as someone else starts again.
 */

import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import { fetchNotifications, markRead } from '@/api/community'
import type { AppNotification } from '@/api/types'
import { realtime, type ServerEvent, type Subscription } from '@/realtime/socket'
import { useSessionStore } from '@/stores/session'

interface NotifyEvent extends ServerEvent {
  notification?: AppNotification
  unread?: number
  replaces?: number | null
}

export const useNotifications = defineStore('notifications', () => {
  const session = useSessionStore()
  const items = ref<AppNotification[]>([])
  const unread = ref(0)
  const cursor = ref<number | null>(null)
  const loaded = ref(false)
  const loading = ref(false)
  const error = ref<unknown>(null)
  let subscription: Subscription | null = null
  let generation = 0
  /** A live `notify` came while the first page was on its way: its count is newer than the page's. */
  let liveDuringLoad = false

  const hasMore = computed(() => cursor.value !== null)

  function reset(): void {
    subscription?.unsubscribe()
    subscription = null
    items.value = []
    unread.value = 0
    cursor.value = null
    loaded.value = false
    error.value = null
    generation++
  }

  function add(notification: AppNotification): void {
    if (items.value.some((n) => n.id === notification.id)) return
    items.value = [notification, ...items.value].sort((a, b) => b.id - a.id)
  }

  async function load(): Promise<void> {
    const mine = generation
    loading.value = true
    error.value = null
    liveDuringLoad = false
    try {
      const page = await fetchNotifications()
      if (mine !== generation) return
      const live = items.value.filter((n) => !page.notifications.some((p) => p.id === n.id))
      items.value = [...live, ...page.notifications].sort((a, b) => b.id - a.id)
      unread.value = liveDuringLoad ? Math.max(unread.value, page.unread) : page.unread
      cursor.value = page.next_cursor
      loaded.value = true
    } catch (err) {
      if (mine === generation) error.value = err
    } finally {
      if (mine === generation) loading.value = false
    }
  }

  async function loadMore(): Promise<void> {
    if (cursor.value === null || loading.value) return
    const mine = generation
    loading.value = true
    try {
      const page = await fetchNotifications(cursor.value)
      if (mine !== generation) return
      const known = new Set(items.value.map((n) => n.id))
      items.value = [...items.value, ...page.notifications.filter((n) => !known.has(n.id))]
      cursor.value = page.next_cursor
      unread.value = page.unread
    } catch (err) {
      if (mine === generation) error.value = err
    } finally {
      if (mine === generation) loading.value = false
    }
  }

  function start(userId: number): void {
    reset()
    const mine = generation
    subscription = realtime.subscribe(`user:${userId}`, {
      onEvent(event: NotifyEvent) {
        if (mine !== generation) return
        if (event.type === 'notify' && event.notification) {
          if (typeof event.replaces === 'number') items.value = items.value.filter((n) => n.id !== event.replaces)
          add(event.notification)
          if (typeof event.unread === 'number') unread.value = event.unread
          if (loading.value) liveDuringLoad = true
        } else if (event.type === 'notify.removed' && Array.isArray(event.ids)) {
          // Its message was deleted or hidden, or an edit took the mention out: nothing left to tell.
          const ids = new Set(event.ids as number[])
          items.value = items.value.filter((n) => !ids.has(n.id))
          if (typeof event.unread === 'number') unread.value = event.unread
        } else if (event.type === 'notify.changed' && Array.isArray(event.ids)) {
          const ids = new Set(event.ids as number[])
          const text = typeof event.text === 'string' ? event.text : ''
          items.value = items.value.map((n) => (ids.has(n.id) ? { ...n, text } : n))
        } else if (event.type === 'notify.read' && typeof event.unread === 'number') {
          unread.value = event.unread
          // Read here or in another tab: `ids` names them, null means all.
          const ids = Array.isArray(event.ids) ? new Set(event.ids as number[]) : null
          if (ids === null || event.unread === 0) items.value = items.value.map((n) => (n.read ? n : { ...n, read: true }))
          else items.value = items.value.map((n) => (n.read || !ids.has(n.id) ? n : { ...n, read: true }))
        }
      },
      onReset() {
        void load()
      },
    })
    void load()
  }

  /** Marks one read (when it was not) and keeps the count in step. */
  async function read(notification: AppNotification): Promise<void> {
    if (notification.read) return
    items.value = items.value.map((n) => (n.id === notification.id ? { ...n, read: true } : n))
    unread.value = Math.max(0, unread.value - 1)
    try {
      unread.value = await markRead([notification.id])
    } catch (err) {
      error.value = err
    }
  }

  async function readAll(): Promise<void> {
    items.value = items.value.map((n) => (n.read ? n : { ...n, read: true }))
    unread.value = 0
    try {
      unread.value = await markRead()
    } catch (err) {
      error.value = err
    }
  }

  watch(
    () => session.user?.id ?? null,
    (id) => {
      if (id === null) reset()
      else start(id)
    },
    { immediate: true },
  )

  return { items, unread, loaded, loading, error, hasMore, load, loadMore, read, readAll }
})
