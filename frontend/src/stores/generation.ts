/**
 * Generation: the settings being edited (the draft), my jobs and their live state, previews included.
 *
 * Any page can reuse it: `useGeneration().submit()` queues the draft (or given settings) and shows it
 * as the current job; `watchJob(id)` follows someone's public job; `applySettings()` loads a job's
 * or a gallery post's settings into the draft (a remix).
 *
 * Live state comes from `job:<id>` on the shared socket, subscribed with `since: 0`, so a job that was
 * already running when the page loaded replays its queue places and steps before going on live.
 * Previews are not sequenced: each one replaces the last (its object URL is revoked a moment later).
 */

import { defineStore } from 'pinia'
import { computed, reactive, ref, shallowRef, watch } from 'vue'
import { watchDebounced } from '@vueuse/core'
import {
  cancelJobHttp, cancelJobSocket, createJobHttp, fetchCatalogue, fetchJob, fetchMyJobs, jobTopic, submitJobSocket,
  type LoraChoice, type SubmitParams,
} from '@/api/generation'
import { ApiError } from '@/api/http'
import type { GenerationSettings, Job, JobImage, JobStatus, LocalModel, ModelCatalogue } from '@/api/types'
import { realtime, RealtimeError, type ServerEvent, type Subscription } from '@/realtime/socket'
import { useSessionStore } from '@/stores/session'

export const DRAFT_STORAGE_KEY = 'va.generate.draft'
export const HISTORY_PAGE_SIZE = 20
/** A replaced preview's object URL lives this long, so an <img> still loading it does not break. */
const PREVIEW_REVOKE_DELAY_MS = 2_000
export const MAX_SEED = 2 ** 32 - 1

export const DEFAULT_SETTINGS: GenerationSettings = {
  kind: 'txt2img',
  model: '',
  prompt: '',
  negative_prompt: '',
  steps: 20,
  guidance: 7,
  width: 512,
  height: 512,
  seed: null,
  sampler: 'Euler a',
  batch: 1,
  strength: 0.75,
  public: false,
}

/** The latest preview frame of a running job. */
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
  /** Cancel was asked for and the job has not stopped yet. */
  cancelling: boolean
  /** Why the job started over: its worker stopped answering (restarted) or was shut down (requeued). */
  notice: { kind: 'restarted' | 'requeued'; attempt: number | null } | null
}

/** A failed submit or cancel: the server's code and message (the code names the field, e.g. invalid_steps). */
export interface ActionError {
  code: string
  message: string
  retryAfter: number | null
  /** The input the server named (`data.field`). */
  field: string | null
}

const STATUS_RANK: Record<JobStatus, number> = { queued: 0, running: 1, done: 2, failed: 2, cancelled: 2 }

export function isActive(status: JobStatus): boolean {
  return status === 'queued' || status === 'running'
}

export function isFinished(status: JobStatus): boolean {
  return STATUS_RANK[status] === 2
}

/** The draft field a refusal names (the server's `data.field`), to mark it in the form. */
export function fieldOfError(error: ActionError | null | undefined): keyof GenerationSettings | 'init_image' | null {
  const field = error?.field
  if (field === 'height') return 'width' // one size control for both sides
  if (field === 'negative_prompt' || field === 'init_image') return field
  return field && field in DEFAULT_SETTINGS ? (field as keyof GenerationSettings) : null
}

function toActionError(err: unknown): ActionError {
  if (err instanceof ApiError || err instanceof RealtimeError) {
    return { code: err.code, message: err.message, retryAfter: err.retryAfter, field: err.field }
  }
  return { code: 'error', message: err instanceof Error ? err.message : String(err), retryAfter: null, field: null }
}

function loadDraft(): Partial<GenerationSettings> | null {
  try {
    const saved: unknown = JSON.parse(localStorage.getItem(DRAFT_STORAGE_KEY) || 'null')
    return saved && typeof saved === 'object' ? (saved as Partial<GenerationSettings>) : null
  } catch {
    return null // unreadable or disabled storage: start from the defaults
  }
}

/** Only known fields of the right type, so a stale or edited localStorage entry cannot break the form. */
function sanitise(values: Partial<GenerationSettings> | null): Partial<GenerationSettings> {
  const out: Partial<GenerationSettings> = {}
  if (!values) return out
  for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof GenerationSettings)[]) {
    const value = values[key]
    const expected = typeof DEFAULT_SETTINGS[key]
    if (key === 'seed') {
      if (value === null || (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= MAX_SEED)) out.seed = value as number | null
    } else if (typeof value === expected && (expected !== 'number' || Number.isFinite(value))) {
      ;(out as Record<string, unknown>)[key] = value
    }
  }
  return out
}

export function randomSeed(): number {
  const value = new Uint32Array(1)
  crypto.getRandomValues(value)
  return value[0]!
}

export const useGenerationStore = defineStore('generation', () => {
  const session = useSessionStore()

  // --- models -------------------------------------------------------------------------------

  const catalogue = shallowRef<ModelCatalogue | null>(null)
  const catalogueLoading = ref(false)
  const catalogueError = ref<ActionError | null>(null)

  const models = computed<LocalModel[]>(() => catalogue.value?.models ?? [])
  const selectedModel = computed(() => models.value.find((m) => m.name === draft.model) ?? null)

  async function loadCatalogue(): Promise<void> {
    catalogueLoading.value = true
    catalogueError.value = null
    try {
      catalogue.value = await fetchCatalogue()
      fitDraftToCatalogue()
    } catch (err) {
      catalogueError.value = toActionError(err)
    } finally {
      catalogueLoading.value = false
    }
  }

  // --- the draft ------------------------------------------------------------------------------

  const saved = sanitise(loadDraft())
  /** The settings in the form; remembered in localStorage. */
  const draft = reactive<GenerationSettings>({ ...DEFAULT_SETTINGS, ...saved })
  /** The init image for img2img (not remembered: files do not survive a reload). */
  const initImage = shallowRef<File | null>(null)
  /** The size follows the model until the person sets one (or one was remembered). */
  let sizeChosen = 'width' in saved

  watchDebounced(draft, () => {
    try {
      const { kind: _kind, ...rest } = draft
      localStorage.setItem(DRAFT_STORAGE_KEY, JSON.stringify(rest))
    } catch {
      // Storage full or disabled: the settings just are not remembered.
    }
  }, { debounce: 250, deep: true })

  /** Picks a model and sampler the server has, and keeps numbers within its limits. */
  function fitDraftToCatalogue(): void {
    const info = catalogue.value
    if (!info) return
    if (info.models.length && !info.models.some((m) => m.name === draft.model)) {
      draft.model = info.models[0]!.name
      sizeChosen = false
    }
    if (!sizeChosen && selectedModel.value) {
      draft.width = draft.height = selectedModel.value.native_size
    }
    if (info.samplers.length && !info.samplers.includes(draft.sampler)) {
      draft.sampler = info.samplers.includes(DEFAULT_SETTINGS.sampler) ? DEFAULT_SETTINGS.sampler : info.samplers[0]!
    }
    const { limits } = info
    draft.steps = Math.min(Math.max(1, Math.round(draft.steps)), limits.steps_max)
    draft.width = fitSide(draft.width)
    draft.height = fitSide(draft.height)
    if (limits.batch_max) draft.batch = Math.min(Math.max(1, draft.batch), limits.batch_max)
    if (limits.guidance_max !== undefined) draft.guidance = Math.min(Math.max(0, draft.guidance), limits.guidance_max)
  }

  function fitSide(value: number): number {
    const limits = catalogue.value?.limits
    if (!limits) return value
    const multiple = limits.size_multiple ?? 8
    const rounded = Math.round(value / multiple) * multiple
    return Math.min(Math.max(rounded, limits.size_min), limits.size_max)
  }

  /** A person picked a model: its native size becomes the size. */
  function chooseModel(name: string): void {
    draft.model = name
    const model = models.value.find((m) => m.name === name)
    if (model) {
      draft.width = draft.height = fitSide(model.native_size)
      sizeChosen = false
    }
  }

  function chooseSize(width: number, height: number): void {
    draft.width = fitSide(width)
    draft.height = fitSide(height)
    sizeChosen = true
  }

  /** Loads settings into the draft (a job from the history, a remix): the prompt, seed and all. */
  function applySettings(settings: Partial<GenerationSettings>): void {
    const clean = sanitise(settings)
    delete clean.kind
    Object.assign(draft, clean)
    if ('width' in clean || 'height' in clean) sizeChosen = true
    fitDraftToCatalogue()
  }

  // --- jobs -----------------------------------------------------------------------------------

  /** Every job known, by id (mine, and any watched). */
  const jobs = ref<Record<string, LiveJob>>({})
  /** My jobs, newest first. */
  const order = ref<string[]>([])
  const nextCursor = ref<string | null>(null)
  const historyLoaded = ref(false)
  const historyLoading = ref(false)
  const historyError = ref<ActionError | null>(null)
  /** The job shown in the live area. */
  const currentId = ref<string | null>(null)
  const submitting = ref(false)
  const submitError = ref<ActionError | null>(null)
  const cancelError = ref<ActionError | null>(null)

  const subscriptions = new Map<string, Subscription>()
  /** Bumped on sign-out: answers to requests made before it are dropped. */
  let epoch = 0
  let initialising: Promise<void> | null = null

  const current = computed<LiveJob | null>(() => (currentId.value ? jobs.value[currentId.value] ?? null : null))
  const history = computed<LiveJob[]>(() => order.value.map((id) => jobs.value[id]).filter((j): j is LiveJob => !!j))
  const hasOlder = computed(() => nextCursor.value !== null)

  /** Adds a job, or updates one from a newer description without undoing what live events told. */
  function upsert(job: Job): LiveJob {
    const have = jobs.value[job.id]
    if (!have) {
      const live: LiveJob = { ...job, elapsed: null, eta: null, preview: null, cancelling: false, notice: null }
      jobs.value[job.id] = live
      if (isFinished(job.status)) stopWatching(job.id)
      return jobs.value[job.id]!
    }
    const behind = STATUS_RANK[job.status] < STATUS_RANK[have.status]
    Object.assign(have, {
      ...job,
      status: behind ? have.status : job.status,
      step: Math.max(have.step, job.step),
      place: behind ? have.place : job.place,
      images: job.images.length ? job.images : have.images,
      error: job.error ?? have.error,
    })
    if (isFinished(have.status)) finish(have)
    return have
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
      case 'gen.done': {
        job.status = 'done'
        job.step = job.total
        if (Array.isArray(event.images)) job.images = event.images as JobImage[]
        if (typeof event.seed === 'number') job.seed = event.seed
        if (event.timings && typeof event.timings === 'object') job.timings = event.timings as Record<string, number>
        finish(job)
        void refresh(id) // finished_at and the rest, as stored
        return
      }
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
    const old = job.preview?.url
    job.preview = null
    if (old) setTimeout(() => URL.revokeObjectURL(old), PREVIEW_REVOKE_DELAY_MS)
  }

  function showPreview(job: LiveJob, event: ServerEvent): void {
    const step = typeof event.step === 'number' ? event.step : 0
    if (!(event.image instanceof Uint8Array) || (job.preview && step < job.preview.step)) return
    const bytes = event.image as Uint8Array<ArrayBuffer>
    const url = URL.createObjectURL(new Blob([bytes], { type: typeof event.mime === 'string' ? event.mime : 'image/webp' }))
    const old = job.preview?.url
    job.preview = { url, step, total: typeof event.total === 'number' ? event.total : job.total }
    if (job.status === 'queued') job.status = 'running'
    if (old) setTimeout(() => URL.revokeObjectURL(old), PREVIEW_REVOKE_DELAY_MS)
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
      for (const job of page.jobs) upsert(job)
      const ids = page.jobs.map((j) => j.id)
      // Jobs submitted while the page was on its way are newer than all of it; older pages start over.
      const newest = page.jobs[0]?.created_at ?? ''
      const fresher = order.value.filter((id) => !ids.includes(id) && (jobs.value[id]?.created_at ?? '') > newest)
      order.value = [...fresher, ...ids]
      nextCursor.value = page.next_cursor
      historyLoaded.value = true
      for (const job of page.jobs) if (isActive(job.status)) watchJob(job.id)
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

  /**
   * For a page that shows generation: models once (again if that failed), and my latest jobs on every
   * call, so jobs started in another tab show up too.
   */
  async function init(): Promise<void> {
    const catalogueLoaded = catalogue.value !== null ? Promise.resolve() : (initialising ??= loadCatalogue().finally(() => {
      initialising = null
    }))
    await Promise.all([catalogueLoaded, loadHistory()])
  }

  /** Shows someone's job as it goes (a public one, or mine from elsewhere): its state, then its live events. */
  async function follow(id: string): Promise<LiveJob | null> {
    const job = await refresh(id)
    if (job && isActive(job.status)) watchJob(id)
    return job
  }

  /** What gen.submit / POST /api/jobs get for these settings. */
  /** LoRAs from the model hub ("Generate with this"), applied at their weight to the next jobs. */
  const loras = ref<LoraChoice[]>([])

  function addLora(name: string, weight = 0.8): void {
    if (!loras.value.some((l) => l.name === name)) loras.value.push({ name, weight })
  }

  function removeLora(name: string): void {
    loras.value = loras.value.filter((l) => l.name !== name)
  }

  function toParams(settings: GenerationSettings, img2img: boolean): SubmitParams {
    const params: SubmitParams = {
      kind: img2img ? 'img2img' : 'txt2img',
      model: settings.model,
      prompt: settings.prompt.trim(),
      negative_prompt: settings.negative_prompt.trim(),
      steps: settings.steps,
      guidance: settings.guidance,
      width: settings.width,
      height: settings.height,
      sampler: settings.sampler,
      batch: settings.batch,
      public: settings.public,
    }
    if (settings.seed !== null) params.seed = settings.seed
    if (img2img) params.strength = settings.strength
    if (loras.value.length) params.loras = loras.value.map((l) => ({ ...l }))
    return params
  }

  /**
   * Queues a job with the draft (or these settings) and makes it the current one. Over the socket;
   * over HTTP with an init image, which may be larger than a socket frame may be.
   * Resolves with the job, or null when it was refused (see `submitError`).
   */
  async function submit(settings: Partial<GenerationSettings> = {}, image: File | null = initImage.value): Promise<LiveJob | null> {
    const run = epoch
    const params = toParams({ ...draft, ...settings }, image !== null)
    submitting.value = true
    submitError.value = null
    try {
      const job = image ? await createJobHttp(params, image) : await submitJobSocket(params)
      if (run !== epoch) return null
      const live = upsert(job)
      if (!order.value.includes(job.id)) order.value.unshift(job.id)
      currentId.value = job.id
      if (isActive(live.status)) watchJob(job.id)
      return live
    } catch (err) {
      if (run === epoch) submitError.value = toActionError(err)
      return null
    } finally {
      submitting.value = false
    }
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

  /** Forgets every job (on sign-out, or another user signing in); the draft stays. */
  function reset(): void {
    epoch++
    for (const id of [...subscriptions.keys()]) stopWatching(id)
    for (const job of Object.values(jobs.value)) if (job.preview) URL.revokeObjectURL(job.preview.url)
    jobs.value = {}
    order.value = []
    nextCursor.value = null
    historyLoaded.value = false
    historyError.value = null
    currentId.value = null
    submitError.value = null
    cancelError.value = null
    initialising = null
  }

  watch(() => session.user?.id ?? null, (now, before) => {
    if (now !== before) reset()
  })

  return {
    // models
    catalogue, catalogueLoading, catalogueError, models, selectedModel, loadCatalogue,
    // the draft
    draft, initImage, chooseModel, chooseSize, applySettings, fitSide, loras, addLora, removeLora,
    // jobs
    jobs, current, currentId, history, hasOlder, historyLoaded, historyLoading, historyError,
    submitting, submitError, cancelError,
    init, loadHistory, loadOlder, submit, cancel, select, follow, watchJob, refresh, reset,
  }
})

/** The generation state shared by the Generate page and any feature that starts or shows jobs. */
export const useGeneration = useGenerationStore
