/**
 * Jobs of every kind (generation, the art studio, stylize) and their live state, previews included: one
 * reducer for the one job lifecycle (docs/PROTOCOL.md, `job:<id>`).
 *
 * `submit(params)` queues a generation job and makes it the current one; `submitArt()` and `track()` add
 * jobs queued elsewhere; `follow(id)` shows someone's public job. Every active job known is watched on
 * `job:<id>` with `since: 0`, so a job that was already running when the page loaded replays its queue
 * places and steps before going on live. Previews are not sequenced: each replaces the last (its object
 * URL is revoked a moment later).
 */

import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import { submitArt as postArt, type ArtPreset } from '@/api/art'
import {
  cancelJobHttp, cancelJobSocket, createJobHttp, fetchJob, fetchMyJobs, jobTopic, submitJobSocket, type SubmitParams,
} from '@/api/generation'
import type { Job, JobImage, JobStatus } from '@/api/types'
import { toActionError, type ActionError } from '@/composables/useAsyncAction'
import { realtime, RealtimeError, type ServerEvent, type Subscription } from '@/realtime/socket'
import { useSessionStore } from '@/stores/session'

export const HISTORY_PAGE_SIZE = 20
/** A replaced preview's object URL lives this long, so an <img> still loading it does not break. */
const PREVIEW_REVOKE_DELAY_MS = 2_000

/** A frame shown while a job runs: its latest preview, or the control image it follows. */
export interface LivePreview {
  /** An object URL of the frame's bytes. */
  url: string
  step: number
  total: number
}

/** A job as the server describes it, plus what only the live events tell. */
export interface LiveJob extends Job {
  /** Seconds since it started, and the server's estimate of what is left (from gen.progress). */
  elapsed: number | null
  eta: number | null
  preview: LivePreview | null
  /** A ControlNet job's control image (gen.control). */
  control: LivePreview | null
  /** Answered from the cache (an art job's photo seen before). */
  cached: boolean
  /** Cancel was asked for and the job has not stopped yet. */
  cancelling: boolean
  /** Why the job started over: its worker stopped answering (restarted) or was shut down (requeued). */
  notice: { kind: 'restarted' | 'requeued'; attempt: number | null } | null
}

const STATUS_RANK: Record<JobStatus, number> = { queued: 0, running: 1, done: 2, failed: 2, cancelled: 2 }

export function isActive(status: JobStatus): boolean {
  return status === 'queued' || status === 'running'
}

export function isFinished(status: JobStatus): boolean {
  return STATUS_RANK[status] === 2
}

function objectUrl(bytes: Uint8Array, mime: unknown): string {
  return URL.createObjectURL(new Blob([bytes as BlobPart], { type: typeof mime === 'string' ? mime : 'image/webp' }))
}

function revokeLater(url: string | undefined): void {
  if (url) setTimeout(() => URL.revokeObjectURL(url), PREVIEW_REVOKE_DELAY_MS)
}

export const useJobsStore = defineStore('jobs', () => {
  const session = useSessionStore()

  /** Every job known, by id (mine, and any watched). */
  const jobs = ref<Record<string, LiveJob>>({})
  /** My jobs, newest first. */
  const order = ref<string[]>([])
  const nextCursor = ref<string | null>(null)
  const historyLoaded = ref(false)
  const historyLoading = ref(false)
  const historyError = ref<ActionError | null>(null)
  /** The job shown in Generate's live area. */
  const currentId = ref<string | null>(null)
  const submitting = ref(false)
  const submitError = ref<ActionError | null>(null)
  const cancelError = ref<ActionError | null>(null)

  const subscriptions = new Map<string, Subscription>()
  /** Bumped on sign-out: answers to requests made before it are dropped. */
  let epoch = 0

  const current = computed<LiveJob | null>(() => (currentId.value ? jobs.value[currentId.value] ?? null : null))
  const history = computed<LiveJob[]>(() => order.value.map((id) => jobs.value[id]).filter((j): j is LiveJob => !!j))
  const hasOlder = computed(() => nextCursor.value !== null)

  /** Adds a job, or updates one from a newer description without undoing what live events told. */
  function upsert(job: Job): LiveJob {
    const have = jobs.value[job.id]
    if (!have) {
      jobs.value[job.id] = {
        ...job, elapsed: null, eta: null, preview: null, control: null, cached: false, cancelling: false, notice: null,
      }
      if (isFinished(job.status)) stopWatching(job.id)
      return jobs.value[job.id]!
    }
    const behind = STATUS_RANK[job.status] < STATUS_RANK[have.status]
    Object.assign(have, {
      ...job,
      status: behind ? have.status : job.status,
      step: Math.max(have.step, job.step),
      place: behind ? have.place : job.place,
      images: job.images.length >= have.images.length ? job.images : have.images,
      error: job.error ?? have.error,
    })
    if (isFinished(have.status)) finish(have)
    return have
  }

  /** Adds a job and follows it while it is active. */
  function track(job: Job): LiveJob {
    const live = upsert(job)
    if (isActive(live.status)) watchJob(job.id)
    return live
  }

  function finish(job: LiveJob): void {
    job.cancelling = false
    job.place = null
    job.eta = job.status === 'done' ? 0 : null
    stopWatching(job.id)
  }

  function onJobEvent(id: string, event: ServerEvent): void {
    const job = jobs.value[id]
    if (!job) return
    const finished = isFinished(job.status)
    switch (event.type) {
      case 'gen.queued':
        if (job.status === 'queued' && typeof event.place === 'number') job.place = event.place
        return
      case 'gen.started':
        if (finished) return
        job.status = 'running'
        job.place = null
        if (typeof event.model === 'string') job.model = event.model
        return
      case 'gen.progress':
        if (finished) return
        job.status = 'running'
        job.place = null
        if (typeof event.step === 'number') job.step = event.step
        if (typeof event.total === 'number') job.total = event.total
        job.elapsed = typeof event.elapsed === 'number' ? event.elapsed : job.elapsed
        job.eta = typeof event.eta === 'number' ? event.eta : null
        return
      case 'gen.preview':
        if (!finished) showPreview(job, event)
        return
      case 'gen.control': {
        const first = (event.images as { image?: unknown; mime?: unknown }[] | undefined)?.[0]
        if (!finished && first?.image instanceof Uint8Array) {
          revokeLater(job.control?.url)
          job.control = { url: objectUrl(first.image, first.mime), step: 0, total: job.total }
        }
        return
      }
      case 'art.result': {
        // One style is ready: an art job shows its images as they come.
        const image = event.image as JobImage | undefined
        if (finished || !image || job.images.some((i) => i.id === image.id)) return
        job.status = 'running'
        job.place = null
        job.images = [...job.images, { ...image, style: typeof event.style === 'string' ? event.style : image.style }]
        job.step = job.images.length
        return
      }
      case 'gen.restarted':
      case 'gen.requeued':
        // Another worker runs it again from step 0 (or it waits for one): its old progress is void.
        if (finished) return
        job.status = event.type === 'gen.restarted' ? 'running' : 'queued'
        job.step = 0
        job.elapsed = null
        job.eta = null
        clearPreview(job)
        job.notice = {
          kind: event.type === 'gen.restarted' ? 'restarted' : 'requeued',
          attempt: typeof event.attempt === 'number' ? event.attempt : null,
        }
        return
      case 'gen.done':
        job.status = 'done'
        job.step = job.total
        if (Array.isArray(event.images)) job.images = event.images as JobImage[]
        if (typeof event.seed === 'number') job.seed = event.seed
        if (event.timings && typeof event.timings === 'object') job.timings = event.timings as Record<string, number>
        job.cached = event.cached === true
        finish(job)
        void refresh(id) // finished_at and the rest, as stored
        return
      case 'gen.error':
        job.status = 'failed'
        job.error = { code: String(event.code ?? 'error'), message: String(event.message ?? '') }
        finish(job)
        void refresh(id)
        return
      case 'gen.cancelled':
        job.status = 'cancelled'
        if (typeof event.step === 'number') job.step = event.step
        finish(job)
        void refresh(id)
        return
    }
  }

  function clearPreview(job: LiveJob): void {
    revokeLater(job.preview?.url)
    job.preview = null
  }

  function showPreview(job: LiveJob, event: ServerEvent): void {
    const step = typeof event.step === 'number' ? event.step : 0
    if (!(event.image instanceof Uint8Array) || (job.preview && step < job.preview.step)) return
    const old = job.preview?.url
    job.preview = { url: objectUrl(event.image, event.mime), step, total: typeof event.total === 'number' ? event.total : job.total }
    if (job.status === 'queued') job.status = 'running'
    revokeLater(old)
  }

  /** Follows a job's live events (from its first one: a fresh subscription replays them all). */
  function watchJob(id: string): void {
    if (subscriptions.has(id)) return
    const subscription = realtime.subscribe(jobTopic(id), {
      onEvent: (event) => onJobEvent(id, event),
      // Older than the history kept (a long job, a server restart): take the stored state instead.
      onReset: () => void refresh(id),
      onError: (err) => {
        const job = jobs.value[id]
        if (job && isActive(job.status)) job.error = { code: err.code, message: err.message }
      },
    }, { since: 0, resubscribe: true })
    subscriptions.set(id, subscription)
  }

  function stopWatching(id: string): void {
    subscriptions.get(id)?.unsubscribe()
    subscriptions.delete(id)
  }

  /** The stored state of one job (also its first load, e.g. someone's public job). */
  async function refresh(id: string): Promise<LiveJob | null> {
    const run = epoch
    try {
      const job = await fetchJob(id)
      return run === epoch ? upsert(job) : null
    } catch {
      return null // the live state stays as it is; nothing better to show
    }
  }

  /** Loads the newest page of my jobs and follows those still queued or running. */
  async function loadHistory(): Promise<void> {
    const run = epoch
    historyLoading.value = true
    historyError.value = null
    try {
      const page = await fetchMyJobs(null, HISTORY_PAGE_SIZE)
      if (run !== epoch) return
      for (const job of page.jobs) track(job)
      const ids = page.jobs.map((j) => j.id)
      // Jobs submitted while the page was on its way are newer than all of it; older pages start over.
      const newest = page.jobs[0]?.created_at ?? ''
      const fresher = order.value.filter((id) => !ids.includes(id) && (jobs.value[id]?.created_at ?? '') > newest)
      order.value = [...fresher, ...ids]
      nextCursor.value = page.next_cursor
      historyLoaded.value = true
      if (!currentId.value && order.value.length) {
        const running = history.value.filter((j) => isActive(j.status))
        currentId.value = (running.at(-1) ?? history.value[0])!.id // the oldest active one runs first
      }
    } catch (err) {
      if (run === epoch) historyError.value = toActionError(err)
    } finally {
      historyLoading.value = false
    }
  }

  async function loadOlder(): Promise<void> {
    if (!nextCursor.value || historyLoading.value) return
    const run = epoch
    historyLoading.value = true
    try {
      const page = await fetchMyJobs(nextCursor.value, HISTORY_PAGE_SIZE)
      if (run !== epoch) return
      for (const job of page.jobs) upsert(job)
      order.value = [...order.value, ...page.jobs.map((j) => j.id).filter((id) => !order.value.includes(id))]
      nextCursor.value = page.next_cursor
    } catch (err) {
      if (run === epoch) historyError.value = toActionError(err)
    } finally {
      historyLoading.value = false
    }
  }

  /** Shows someone's job as it goes (a public one, or mine from elsewhere): its state, then its live events. */
  async function follow(id: string): Promise<LiveJob | null> {
    const job = await refresh(id)
    if (job && isActive(job.status)) watchJob(id)
    return job
  }

  /** Puts a job I just queued at the top of my history. */
  function addMine(job: Job): LiveJob {
    const live = track(job)
    if (!order.value.includes(job.id)) order.value.unshift(job.id)
    return live
  }

  /**
   * Queues a generation job and makes it the current one. Over the socket; over HTTP with an init image,
   * which may be larger than a socket frame may be. Resolves with the job, or null when it was refused
   * (see `submitError`).
   */
  async function submit(params: SubmitParams, image: File | null = null): Promise<LiveJob | null> {
    const run = epoch
    submitting.value = true
    submitError.value = null
    try {
      const job = image ? await createJobHttp(params, image) : await submitJobSocket(params)
      if (run !== epoch) return null
      const live = addMine(job)
      currentId.value = job.id
      return live
    } catch (err) {
      if (run === epoch) submitError.value = toActionError(err)
      return null
    } finally {
      submitting.value = false
    }
  }

  /** Queues an art-studio job for the photo; its four styles arrive as `art.result` on the job. Throws when refused. */
  async function submitArt(photo: Blob, preset: ArtPreset): Promise<LiveJob> {
    const { job } = await postArt(photo, preset)
    return addMine(job)
  }

  /** Cancels a queued job at once, a running one within a step (gen.cancelled follows). */
  async function cancel(id: string | null = currentId.value): Promise<void> {
    const job = id ? jobs.value[id] : null
    if (!job || !isActive(job.status)) return
    job.cancelling = true
    cancelError.value = null
    try {
      let answer: Job
      try {
        answer = await cancelJobSocket(job.id)
      } catch (err) {
        // No answer on the socket (dropped, timed out): the same request over HTTP.
        if (!(err instanceof RealtimeError) || !['disconnected', 'timeout', 'closed'].includes(err.code)) throw err
        answer = await cancelJobHttp(job.id)
      }
      upsert(answer)
    } catch (err) {
      const error = toActionError(err)
      if (error.code === 'job_finished') {
        await refresh(job.id)
      } else {
        job.cancelling = false
        cancelError.value = error
      }
    }
  }

  /** Shows a job in the live area (a refusal shown for an earlier submit goes away). */
  function select(id: string): void {
    if (!jobs.value[id]) return
    currentId.value = id
    submitError.value = null
    cancelError.value = null
  }

  /** Forgets every job (on sign-out, or another user signing in). */
  function reset(): void {
    epoch++
    for (const id of [...subscriptions.keys()]) stopWatching(id)
    for (const job of Object.values(jobs.value)) {
      for (const frame of [job.preview, job.control]) if (frame) URL.revokeObjectURL(frame.url)
    }
    jobs.value = {}
    order.value = []
    nextCursor.value = null
    historyLoaded.value = false
    historyError.value = null
    currentId.value = null
    submitError.value = null
    cancelError.value = null
  }

  watch(() => session.user?.id ?? null, (now, before) => {
    if (now !== before) reset()
  })

  return {
    jobs, current, currentId, history, hasOlder, historyLoaded, historyLoading, historyError,
    submitting, submitError, cancelError,
    loadHistory, loadOlder, submit, submitArt, track, cancel, select, follow, watchJob, refresh, reset,
  }
})
