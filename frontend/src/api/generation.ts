import { http } from './http'
import type { GenerationSettings, ImageInfo, Job, JobPage, ModelCatalogue } from './types'
import { realtime } from '@/realtime/socket'

/** The job's topic on the shared socket: gen.queued, gen.started, gen.progress, gen.preview, gen.done… */
export function jobTopic(id: string): string {
  return `job:${id}`
}

/** A job's fields as sent: the settings, and the init image for img2img. */
export interface SubmitParams extends Partial<GenerationSettings> {
  model: string
  prompt: string
  /** LoRAs from the model hub, applied to this job only. */
  loras?: LoraChoice[]
}

export interface LoraChoice {
  name: string
  weight: number
}

/** Loadable models, samplers and request limits. */
export function fetchCatalogue(): Promise<ModelCatalogue> {
  return http.get<ModelCatalogue>('/api/models/local')
}

/** My jobs, newest first; `before` is the previous page's `next_cursor`. */
export function fetchMyJobs(before?: string | null, limit = 20): Promise<JobPage> {
  const query = new URLSearchParams({ mine: '1', limit: String(limit) })
  if (before) query.set('before', before)
  return http.get<JobPage>(`/api/jobs?${query}`)
}

export async function fetchJob(id: string): Promise<Job> {
  return (await http.get<{ job: Job }>(`/api/jobs/${encodeURIComponent(id)}`)).job
}

export async function fetchImage(id: string): Promise<ImageInfo> {
  return (await http.get<{ image: ImageInfo }>(`/api/images/${encodeURIComponent(id)}`)).image
}

/** Queues a job over HTTP (the init image as base64): used for img2img, whose image may not fit a socket frame. */
export async function createJobHttp(params: SubmitParams, initImage?: Blob | null): Promise<Job> {
  const body: Record<string, unknown> = { ...params }
  if (initImage) body.init_image = await blobToBase64(initImage)
  return (await http.post<{ job: Job }>('/api/jobs', body)).job
}

export async function cancelJobHttp(id: string): Promise<Job> {
  return (await http.delete<{ job: Job }>(`/api/jobs/${encodeURIComponent(id)}`)).job
}

// The server answers gen.submit once the job is stored and queued: quick, but a cold database may lag.
const SUBMIT_TIMEOUT_MS = 20_000

/**
 * Queues a job over the socket (`gen.submit`). The server subscribes the socket to `job:<id>` before it
 * answers; subscribe with `{ since: 0, resubscribe: true }` to get those first events too.
 * Not retried after a drop: the server does not de-duplicate submissions.
 */
export async function submitJobSocket(params: SubmitParams): Promise<Job> {
  const ack = await realtime.request<{ type: string; job: Job }>({ op: 'gen.submit', ...params }, { timeoutMs: SUBMIT_TIMEOUT_MS })
  return ack.job
}

export async function cancelJobSocket(id: string): Promise<Job> {
  return (await realtime.request<{ type: string; job: Job }>({ op: 'gen.cancel', job: id })).job
}

function blobToBase64(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader()
    reader.onload = () => resolve(String(reader.result).split(',', 2)[1] ?? '')
    reader.onerror = () => reject(reader.error ?? new Error('The image could not be read.'))
    reader.readAsDataURL(blob)
  })
}
