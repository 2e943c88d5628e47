/**
 * One shared prompt session for a page: its details, members and roles, the renders and the one shown,
 * the CRDT provider (prompt, negative prompt and settings, with awareness for who is online), and the
 * owner's actions. The page only lays it out and asks for confirmations.
 *
 * Session events (`collab.members`, `collab.render`, `collab.removed`, `collab.closed`) come through the
 * provider's subscription; render jobs are jobs like any other and live in the jobs store.
 */

import { computed, onScopeDispose, ref, shallowRef, watch } from 'vue'
import {
  closeSession, fetchSession, removeMember as removeMemberApi, restoreRender, startRender,
  type CollabDetails, type CollabMember, type CollabRender, type CollabRole,
} from '@/api/collab'
import { CollabProvider, userColour } from '@/collab/provider'
import { useAsyncAction } from '@/composables/useAsyncAction'
import { useErrorMessage } from '@/composables/useErrorMessage'
import { realtime, type ServerEvent } from '@/realtime/socket'
import { useJobsStore } from '@/stores/jobs'
import { useSessionStore } from '@/stores/session'

/** The latest renders followed live (their states for the strip, their events for those still running). */
const FOLLOWED_RENDERS = 12

export function useCollabSession(sessionId: () => string) {
  const errorMessage = useErrorMessage()
  const jobs = useJobsStore()
  const me = useSessionStore()

  const details = ref<CollabDetails | null>(null)
  const loading = ref(true)
  const loadError = ref('')
  const role = ref<CollabRole>('viewer')
  const members = ref<CollabMember[]>([])
  const renders = ref<CollabRender[]>([])
  const ended = ref<'removed' | 'closed' | null>(null)
  const synced = ref(false)
  const provider = shallowRef<CollabProvider | null>(null)
  /** User ids with a live awareness state (their tab is open on this session). */
  const online = ref<Set<number>>(new Set())
  const shownRenderId = ref<string | null>(null)

  const canEdit = computed(() => !ended.value && (role.value === 'owner' || role.value === 'editor'))
  const isOwner = computed(() => role.value === 'owner')
  const shownRender = computed(() => renders.value.find((r) => r.id === shownRenderId.value) ?? renders.value[0] ?? null)
  const shownJob = computed(() => (shownRender.value ? jobs.jobs[shownRender.value.job] ?? null : null))
  const shownStatus = computed(() => shownJob.value?.status ?? (shownRender.value ? 'queued' : 'idle'))
  const resultImage = computed(() => (shownJob.value?.status === 'done' ? shownJob.value.images[0] ?? null : null))
  const progress = computed(() => {
    const job = shownJob.value
    if (!job) return 0
    if (job.status === 'done') return 100
    const total = job.total || job.steps || 0
    return total ? Math.round((job.step / total) * 100) : 0
  })

  function refreshOnline(): void {
    const p = provider.value
    if (!p) return
    const ids = new Set<number>()
    p.awareness.getStates().forEach((state) => {
      const id = (state as { user?: { id?: number } }).user?.id
      if (typeof id === 'number') ids.add(id)
    })
    online.value = ids
  }

  function onSessionEvent(event: ServerEvent): void {
    if (event.type === 'collab.members') {
      members.value = event.members as CollabMember[]
      const mine = members.value.find((m) => m.user.id === me.user?.id)
      if (mine) {
        role.value = mine.role
        provider.value?.setCanEdit(canEdit.value)
      }
    } else if (event.type === 'collab.render') {
      const made = event.render as CollabRender
      if (!renders.value.some((r) => r.id === made.id)) renders.value = [made, ...renders.value]
      shownRenderId.value = made.id
      void jobs.follow(made.job)
    } else if (event.type === 'collab.removed' || event.type === 'collab.closed') {
      ended.value = event.type === 'collab.removed' ? 'removed' : 'closed'
      provider.value?.setCanEdit(false)
    }
  }

  async function load(): Promise<void> {
    loading.value = true
    loadError.value = ''
    try {
      const loaded = await fetchSession(sessionId())
      details.value = loaded
      role.value = loaded.role
      members.value = loaded.members
      renders.value = loaded.renders
      if (loaded.session.closed) ended.value = 'closed'
      for (const made of loaded.renders.slice(0, FOLLOWED_RENDERS)) void jobs.follow(made.job).catch(() => undefined)
      if (!loaded.session.closed) connect()
    } catch (err) {
      loadError.value = errorMessage(err)
    } finally {
      loading.value = false
    }
  }

  function connect(): void {
    const p = new CollabProvider(sessionId(), canEdit.value, {
      onEvent: onSessionEvent,
      onSynced: () => { synced.value = true },
      onError: (_code, message) => { loadError.value = message },
    })
    const user = me.user!
    p.setUser({ id: user.id, name: user.display_name || user.username, ...userColour(user.id) })
    p.awareness.on('change', refreshOnline)
    provider.value = p
    p.connect()
    refreshOnline()
  }

  function teardown(): void {
    provider.value?.destroy()
    provider.value = null
    synced.value = false
  }

  /** Renders the document as it stands now; everyone in the session watches the same job. */
  const renderAction = useAsyncAction(async () => {
    const { render: made } = await startRender(sessionId())
    onSessionEvent({ type: 'collab.render', render: made })
  })

  /** Puts a render's prompt and settings back into the shared document. Throws when refused. */
  async function restore(made: CollabRender): Promise<void> {
    await restoreRender(sessionId(), made.id)
  }

  async function removeMember(member: CollabMember): Promise<void> {
    await removeMemberApi(sessionId(), member.user.id)
  }

  async function close(): Promise<void> {
    await closeSession(sessionId())
    ended.value = 'closed'
  }

  watch(sessionId, () => {
    teardown()
    ended.value = null
    void load()
  }, { immediate: true })

  // A reconnect re-syncs on its own (the provider sends sync step 1 on every subscription ack).
  watch(() => realtime.state.value, () => refreshOnline())

  onScopeDispose(teardown)

  return {
    details, loading, loadError, role, members, renders, ended, synced, provider, online, shownRenderId,
    canEdit, isOwner, shownRender, shownJob, shownStatus, resultImage, progress,
    render: renderAction.run, rendering: renderAction.busy, renderError: renderAction.error,
    restore, removeMember, close,
  }
}
