/**
 * Stylize: a photo rendered in a style preset (docs/openapi.yaml: /api/presets, /api/stylize, /api/shares).
 * The photo is uploaded as the raw body with XMLHttpRequest, whose upload progress fetch cannot report;
 * "try another style" sends `photo_of` (the first job) instead, so nothing is uploaded again.
 */

import { ApiError, XSRF_COOKIE, XSRF_HEADER, http, readCookie } from './http'
import type { Job, JobImage, PublicUser } from './types'

export interface PresetProblem {
  code: 'missing_model' | 'missing_lora' | 'missing_controlnet' | 'controlnet_base_mismatch' | string
  name: string
  message: string
}

export interface Preset {
  id: number
  name: string
  title: { en: string; zh: string }
  description: { en: string; zh: string }
  checkpoint: string
  cover_url: string | null
  /** False when a model it needs is missing (then `problems` say which). */
  available: boolean
  problems: PresetProblem[]
  retired: boolean
  steps: number
  strength: number | null
}

export interface Share {
  id: string
  /** The page anyone may open: `/s/<id>`. */
  url: string
  title: string
  owner: PublicUser
  image: JobImage
  job: string
  preset: { id: number; name: string; title: { en: string; zh: string } } | null
  subject: string
  /** The photo it was made from, only when its owner chose to show it. */
  original_url: string | null
  created_at: string
}

export async function fetchPresets(): Promise<Preset[]> {
  return (await http.get<{ presets: Preset[] }>('/api/presets')).presets
}

export interface StylizeRequest {
  preset: number
  subject?: string
  /** The photo to upload… */
  photo?: Blob
  /** …or the id of an earlier stylize job of mine whose photo is used again (nothing is uploaded). */
  photoOf?: string
  /** Upload progress, 0..1 (only when a photo is sent). */
  onProgress?: (fraction: number) => void
}

/** Queues a stylize job; answers at once with the job (202), whose events follow on `job:<id>`. */
export async function submitStylize(request: StylizeRequest): Promise<Job> {
  const params = new URLSearchParams({ preset: String(request.preset) })
  if (request.subject?.trim()) params.set('subject', request.subject.trim())
  if (request.photoOf) params.set('photo_of', request.photoOf)
  const xsrf = await xsrfToken()
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('POST', `/api/stylize?${params}`)
    xhr.setRequestHeader('Accept', 'application/json')
    if (xsrf) xhr.setRequestHeader(XSRF_HEADER, xsrf)
    if (request.photo) {
      xhr.setRequestHeader('Content-Type', request.photo.type.startsWith('image/') ? request.photo.type : 'image/jpeg')
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable && event.total > 0) request.onProgress?.(event.loaded / event.total)
      }
    }
    xhr.onload = () => {
      const body = parseJson(xhr.responseText)
      if (xhr.status === 202 && body && typeof body === 'object' && 'job' in body) {
        request.onProgress?.(1)
        resolve((body as { job: Job }).job)
      } else {
        reject(toError(xhr.status, body))
      }
    }
    xhr.onerror = () => reject(new ApiError(0, 'network_error', 'The server could not be reached. Check your connection and try again.'))
    xhr.send(request.photo ?? null)
  })
}

export async function createShare(image: string, options: { showOriginal?: boolean; title?: string } = {}): Promise<Share> {
  const body: Record<string, unknown> = { image, show_original: options.showOriginal ?? false }
  if (options.title) body.title = options.title
  return (await http.post<{ share: Share }>('/api/shares', body)).share
}

export async function fetchShare(id: string): Promise<Share> {
  return (await http.get<{ share: Share }>(`/api/shares/${encodeURIComponent(id)}`)).share
}

async function xsrfToken(): Promise<string | null> {
  const existing = readCookie(XSRF_COOKIE)
  if (existing) return existing
  await fetch('/api/me', { credentials: 'same-origin' }).catch(() => undefined) // hands out the cookie
  return readCookie(XSRF_COOKIE)
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null
  } catch {
    return null
  }
}

function toError(status: number, body: unknown): ApiError {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error
  const code = typeof error?.code === 'string' ? error.code : status === 413 ? 'payload_too_large' : 'http_error'
  const message = typeof error?.message === 'string' ? error.message : `The request failed (HTTP ${status}).`
  return new ApiError(status, code, message)
}
