/** Model hub: find, create, edit and delete models; upload files with tus (resumable); download. */

import * as tus from 'tus-js-client'
import { ApiError, readCookie, request, XSRF_COOKIE, XSRF_HEADER } from './http'

export const HUB_KINDS = ['checkpoint', 'lora', 'controlnet', 'vae', 'embedding'] as const
export const HUB_BASES = ['sd1', 'sd2', 'sdxl'] as const
export const HUB_SORTS = ['newest', 'downloads', 'likes'] as const
export type HubSort = (typeof HUB_SORTS)[number]

export interface HubFile {
  id: number
  filename: string
  size_bytes: number
  sha256: string
  autov2: string
  kind: string
  base: string
  tensor_count: number
  metadata: Record<string, string>
  download_url: string
  /** The name the Generate page knows it by (checkpoints and LoRAs), else null. */
  engine_name: string | null
}

export interface HubVersion {
  id: number
  name: string
  notes: string
  created_at: string
  commit: string
  files: HubFile[]
}

export interface HubModel {
  id: number
  repo_id: string
  owner: { id: number; username: string }
  slug: string
  name: string
  kind: string
  base: string
  description: string
  /** Rendered by the server with raw HTML off and sanitised: safe for v-html. */
  description_html?: string
  tags: string[]
  licence: string
  nsfw: boolean
  /** Hidden by a moderator: only its owner and moderators still see it. */
  hidden?: boolean
  downloads: number
  likes: number
  thumbnail_url: string | null
  created_at: string
  updated_at: string
  versions?: HubVersion[]
}

export interface HubModelInput {
  name?: string
  kind?: string
  base?: string
  description?: string
  tags?: string[]
  licence?: string
  nsfw?: boolean
}

export interface HubQuery {
  q?: string
  kind?: string
  base?: string
  owner?: string
  sort?: HubSort
  cursor?: string | null
  limit?: number
}

export function listModels(query: HubQuery): Promise<{ models: HubModel[]; next_cursor: string | null }> {
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value))
  }
  return request('GET', `/api/hub/models?${params}`)
}

export const getModel = (id: number | string) => request<{ model: HubModel }>('GET', `/api/hub/models/${id}`)
export const createModel = (input: HubModelInput) => request<{ model: HubModel }>('POST', '/api/hub/models', { json: input })
export const updateModel = (id: number, input: HubModelInput) =>
  request<{ model: HubModel }>('PATCH', `/api/hub/models/${id}`, { json: input })
export const deleteModel = (id: number) => request<void>('DELETE', `/api/hub/models/${id}`)
export const deleteFile = (id: number) => request<void>('DELETE', `/api/hub/files/${id}`)
export const addVersion = (id: number, name: string) =>
  request<{ version: { id: number; name: string } }>('POST', `/api/hub/models/${id}/versions`, { json: { name } })
export const setThumbnail = (id: number, image: File) =>
  request<{ model: HubModel }>('PUT', `/api/hub/models/${id}/thumbnail`, { body: image, contentType: image.type })
export const setLiked = (id: number, liked: boolean) =>
  request<void>(liked ? 'PUT' : 'DELETE', `/api/hub/models/${id}/like`)

export interface UploadProgress {
  sent: number
  total: number
  /** Bytes per second over the last few seconds. */
  speed: number
  /** Seconds left at that speed, or null before it is known. */
  eta: number | null
}

export interface UploadHandle {
  promise: Promise<number>
  abort: () => void
  /** True when an earlier upload of the same file (e.g. before a reload) was picked up where it stopped. */
  resumed: () => boolean
}

/** A tus error as a sentence: the server's JSON message when it sent one. */
function tusError(err: unknown): ApiError {
  const detailed = err as { originalResponse?: { getStatus(): number; getBody(): string } | null; message?: string }
  const response = detailed.originalResponse
  if (response) {
    try {
      const body = JSON.parse(response.getBody()) as { error?: { code: string; message: string } }
      if (body.error) return new ApiError(response.getStatus(), body.error.code, body.error.message)
    } catch {
      // not JSON: fall through
    }
    return new ApiError(response.getStatus(), 'upload_failed', `The upload failed (HTTP ${response.getStatus()}).`)
  }
  return new ApiError(0, 'network_error', 'The server could not be reached. The upload resumes when you try again.')
}

/**
 * Uploads one file into a model version with tus: 8 MiB pieces, retried, and resumed after a reload
 * (tus-js-client remembers unfinished uploads by file in localStorage). Resolves to the new file's id.
 */
export function uploadFile(file: File, versionId: number, onProgress: (p: UploadProgress) => void): UploadHandle {
  let resumed = false
  let upload: tus.Upload | null = null
  const samples: Array<[number, number]> = []
  const promise = new Promise<number>((resolve, reject) => {
    upload = new tus.Upload(file, {
      endpoint: '/api/hub/uploads',
      chunkSize: 8 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      removeFingerprintOnSuccess: true,
      metadata: { filename: file.name, version_id: String(versionId) },
      // Each request re-reads the cookie: it may have been renewed since the upload started.
      onBeforeRequest(req) {
        const token = readCookie(XSRF_COOKIE)
        if (token) req.setHeader(XSRF_HEADER, token)
      },
      onShouldRetry(err) {
        const status = (err as tus.DetailedError).originalResponse?.getStatus() ?? 0
        // 4xx answers say what is wrong with the file or the request: retrying cannot help (423: busy, 409: moved on).
        return status === 0 || status >= 500 || status === 423 || status === 409
      },
      onProgress(sent, total) {
        const now = performance.now()
        samples.push([now, sent])
        while (samples.length > 2 && now - samples[0]![0] > 5000) samples.shift()
        const [t0, s0] = samples[0]!
        const speed = now > t0 ? ((sent - s0) * 1000) / (now - t0) : 0
        onProgress({ sent, total, speed, eta: speed > 0 ? (total - sent) / speed : null })
      },
      onAfterResponse(_req, res) {
        const id = res.getHeader('Hub-File-Id')
        if (id) resolve(Number(id))
      },
      onSuccess() {
        // onAfterResponse resolved with the file id; this covers a server that did not send it.
        resolve(0)
      },
      onError(err) {
        reject(tusError(err))
      },
    })
    void upload.findPreviousUploads().then((previous) => {
      const last = previous[0]
      if (last) {
        resumed = true
        upload!.resumeFromPreviousUpload(last)
      }
      upload!.start()
    })
  })
  return { promise, abort: () => void upload?.abort(), resumed: () => resumed }
}
