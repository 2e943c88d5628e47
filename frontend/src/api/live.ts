import { http } from './http'
import type { PublicUser } from './types'

/** A public render on the Live page (running, or among the newest finished with its first `image`). */
export interface LiveCard {
  id: string
  kind: string
  model: string
  owner: PublicUser
  prompt: string
  width: number | null
  height: number | null
  step: number
  total: number | null
  started_at: string | null
  finished_at: string | null
  image?: string
}

export interface LivePage {
  running: LiveCard[]
  queued: number
  recent: LiveCard[]
  tile_fps: number
}

export function fetchLive(): Promise<LivePage> {
  return http.get<LivePage>('/api/live')
}
