/** Art studio: a photo becomes four styles with OpenCV filters (POST /api/art, results on job:<id>). */

import { request } from './http'

export type ArtPreset = 'fast' | 'quality'
export const ART_STYLES = ['pencil', 'colour_pencil', 'oil', 'watercolour'] as const
export type ArtStyle = (typeof ART_STYLES)[number]

export interface ArtImage {
  id: string
  url: string
  thumb_url: string
  width: number
  height: number
}

export interface ArtJob {
  id: string
  kind: 'art'
  status: string
  preset: ArtPreset
  width: number
  height: number
  /** Waiting for a worker: 1 = next (gen.queued follows when it changes). */
  place: number | null
}

/** `art.result` on job:<id>: one style is ready. */
export interface ArtResultEvent {
  type: 'art.result'
  job: string
  style: ArtStyle
  image: ArtImage
  cached: boolean
  [field: string]: unknown
}

/** Sends the photo itself as the body; answers at once with the job (202). */
export function submitArt(photo: Blob, preset: ArtPreset): Promise<{ job: ArtJob }> {
  return request<{ job: ArtJob }>('POST', `/api/art?preset=${encodeURIComponent(preset)}`, {
    body: photo,
    contentType: photo.type && photo.type.startsWith('image/') ? photo.type : 'image/png',
  })
}
