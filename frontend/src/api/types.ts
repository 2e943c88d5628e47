/** Shapes of the server's JSON, as documented in docs/openapi.yaml. */

export interface User {
  id: number
  username: string
  display_name: string
  bio: string
  avatar_url: string | null
  is_moderator: boolean
  /** ISO 8601, UTC. */
  created_at: string
  /** Only present on the signed-in user's own record. */
  email?: string | null
}

export interface ApiToken {
  id: number
  name: string
  /** The first characters of the secret, enough to recognise it. */
  prefix: string
  created_at: string
  last_used_at: string | null
}

export interface UserEnvelope {
  user: User
}

/** Anyone's public face: chat authors, people present in a room. */
export type PublicUser = Pick<User, 'id' | 'username' | 'display_name' | 'avatar_url'>

/** A chat message (GET /api/rooms/{room}/messages and the WebSocket's chat.* events). */
export interface ChatMessage {
  id: number
  room: string
  /** The room topic's seq of this message's latest change (send, edit). */
  seq: number
  author: PublicUser
  text: string
  /** Usernames of existing users mentioned with @, lower-case. */
  mentions: string[]
  created_at: string
  edited_at: string | null
  deleted: boolean
}

export interface MessagePage {
  messages: ChatMessage[]
  /** Pass as `before` for the page of older messages; null at the start of the room. */
  next_cursor: number | null
}

// --- generation (docs/PROTOCOL.md "Generation", /api/jobs, /api/models/local, /api/images) -------

export type ModelFamily = 'sd1' | 'sd2' | 'sdxl'

/** A model the engine can load (GET /api/models/local). */
export interface LocalModel {
  name: string
  family: ModelFamily | string
  /** `diffusers` (a folder) or `single_file` (one checkpoint). */
  layout: string
  size_bytes: number
  /** The side the model was trained at (512, 768, 1024). */
  native_size: number
}

export interface GenerationLimits {
  steps_max: number
  size_min: number
  size_max: number
  /** Widths and heights are multiples of this (8: the VAE downsamples by 8). */
  size_multiple?: number
  prompt_max_chars: number
  batch_max?: number
  guidance_max?: number
}

export interface ModelCatalogue {
  models: LocalModel[]
  samplers: string[]
  limits: GenerationLimits
}

export type JobKind = 'txt2img' | 'img2img'
export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled'

/** One picture of a job (also in `gen.done`). */
export interface JobImage {
  id: string
  /** The PNG (with its A1111 parameters chunk). */
  url: string
  /** A WebP thumbnail. */
  thumb_url: string
  width: number
  height: number
  seed: number
}

/** What a person chooses for a job: the fields of `gen.submit` / POST /api/jobs, bar the init image. */
export interface GenerationSettings {
  kind: JobKind
  model: string
  prompt: string
  negative_prompt: string
  steps: number
  guidance: number
  width: number
  height: number
  /** null: a random one, chosen by the server (and reported back). */
  seed: number | null
  sampler: string
  batch: number
  strength: number
  public: boolean
}

export interface Job extends GenerationSettings {
  id: string
  status: JobStatus
  /** 1 = next; only while queued. */
  place: number | null
  step: number
  total: number
  error: { code: string; message: string } | null
  images: JobImage[]
  created_at: string | null
  started_at: string | null
  finished_at: string | null
  timings: Record<string, number>
}

export interface JobPage {
  jobs: Job[]
  /** Pass as `before` for older jobs; null when there are none. */
  next_cursor: string | null
}

/** GET /api/images/<id>. */
export interface ImageInfo {
  id: string
  job: string
  owner: number
  width: number
  height: number
  seed: number
  /** The A1111 "parameters" text. */
  parameters: string
  url: string
  thumb_url: string
  created_at: string
}
