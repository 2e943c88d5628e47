/**
 * Art studio: a photo becomes four styles with OpenCV filters (POST /api/art). The job is like any other:
 * its events come on job:<id>, each style as `art.result` (the jobs store shows them as the job's images).
 */

import { request } from './http'
import type { Job } from './types'

export type ArtPreset = 'fast' | 'quality'
export const ART_STYLES = ['pencil', 'colour_pencil', 'oil', 'watercolour'] as const
export type ArtStyle = (typeof ART_STYLES)[number]

/** Sends the photo itself as the body; answers at once with the job (202). */
export function submitArt(photo: Blob, preset: ArtPreset): Promise<{ job: Job }> {
  return request<{ job: Job }>('POST', `/api/art?preset=${encodeURIComponent(preset)}`, {
    body: photo,
    contentType: photo.type && photo.type.startsWith('image/') ? photo.type : 'image/png',
  })
}
