/** A session owner's invite links: make one (role, expiry, uses), list the live ones, revoke. */

import { reactive } from 'vue'
import { createInvite, fetchInvites, revokeInvite, type CollabInvite } from '@/api/collab'
import { useErrorMessage } from '@/composables/useErrorMessage'

const HOUR_SECS = 60 * 60
const DAY_SECS = 24 * HOUR_SECS
/** How long a new link lasts, and for how many people (0: anyone with it until it expires). */
export const EXPIRY_CHOICES = [HOUR_SECS, DAY_SECS, 7 * DAY_SECS, 30 * DAY_SECS]
export const USE_CHOICES = [1, 5, 25, 0]
export { DAY_SECS, HOUR_SECS }

export function useCollabInvites(sessionId: () => string) {
  const errorMessage = useErrorMessage()
  const invite = reactive({
    open: false, role: 'editor' as 'editor' | 'viewer', expiresIn: 7 * DAY_SECS, maxUses: 1,
    link: '', busy: false, error: '', live: [] as CollabInvite[],
  })

  async function loadInvites(): Promise<void> {
    try {
      invite.live = await fetchInvites(sessionId())
    } catch (err) {
      invite.error = errorMessage(err)
    }
  }

  async function makeInvite(): Promise<void> {
    invite.busy = true
    invite.error = ''
    try {
      const made = await createInvite(sessionId(), invite.role, {
        expires_in_secs: invite.expiresIn, max_uses: invite.maxUses || null,
      })
      invite.link = `${window.location.origin}${made.path}`
      await loadInvites()
    } catch (err) {
      invite.error = errorMessage(err)
    } finally {
      invite.busy = false
    }
  }

  async function revoke(link: CollabInvite): Promise<void> {
    try {
      await revokeInvite(sessionId(), link.id)
      invite.live = invite.live.filter((i) => i.id !== link.id)
    } catch (err) {
      invite.error = errorMessage(err)
    }
  }

  return { invite, loadInvites, makeInvite, revoke }
}
