import { watch } from 'vue'
import { useSessionStore } from '@/stores/session'
import { realtime } from './socket'

/**
 * The socket is whoever the session cookie says: when the user logs in or out, open a new one
 * (subscriptions carry over). Call once, from App's setup.
 */
export function bindRealtimeToSession(): void {
  const session = useSessionStore()
  watch(
    () => session.user?.id ?? null,
    (now, before) => {
      if (now !== before) realtime.reconnect()
    },
  )
}
