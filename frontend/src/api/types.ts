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
  /** Hidden by a moderator: only its author and moderators still get it (in the HTTP history). */
  hidden?: boolean
  /** The public job a `/imagine <prompt>` message started (watch `job:<id>`), or null. */
  job?: string | null
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
/** Every kind of job on the one lifecycle: generation, the art studio's styles, a stylized photo. */
export type AnyJobKind = JobKind | 'art' | 'stylize'
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
  /** An art job's image: which of the styles it is. */
  style?: string
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

export interface Job extends Omit<GenerationSettings, 'kind'> {
  kind: AnyJobKind
  /** An art job's preset ('fast' | 'quality'), a stylize job's preset id. */
  preset?: string | number
  /** A stylize job's style, as its moderator titled it, and the words its author added. */
  preset_title?: string
  subject?: string
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

// --- community (docs/openapi.yaml: /api/posts, follows, notifications, reports, moderation) ------

/** What Remix fills in: the generation settings a post was made with (the model is `model`). */
export interface PostSettings {
  prompt?: string
  negative_prompt?: string
  sampler?: string
  steps?: number
  guidance?: number
  width?: number
  height?: number
  seed?: number
  strength?: number
}

export interface PostCover {
  id: string
  width: number
  height: number
  /** The PNG: only on the post page, on demand. */
  url: string
  /** WebP thumbnail, what the gallery shows. */
  thumb_url: string
}

/** A post as the gallery shows it. */
export interface PostCard {
  id: number
  title: string
  owner: PublicUser
  cover: PostCover
  like_count: number
  /** Whether I like it; absent when signed out. */
  liked?: boolean
  nsfw: boolean
  tags: string[]
  model: string
  /** Hidden by a moderator: only its owner and moderators see it. */
  hidden: boolean
  created_at: string
}

export interface Post extends PostCard {
  /** Plain text: rendered as text, never as HTML. */
  description: string
  settings: PostSettings
  job: string
  images: JobImage[]
  /** The chat room beside it: `post:<id>`. */
  room: string
  updated_at: string
  /** The photo a stylized post was made from, only when its owner chose to show it. */
  original_url?: string | null
}

export interface PostPage {
  posts: PostCard[]
  next_cursor: string | null
}

export interface LikeState {
  liked: boolean
  like_count: number
}

export interface FollowState {
  following: boolean
  followers: number
}

export interface UserStats {
  followers: number
  following: number
  posts: number
  /** Whether I follow this user (false when signed out). */
  followed: boolean
}

export type NotificationKind = 'like' | 'follow' | 'mention' | 'message'

export interface AppNotification {
  id: number
  kind: NotificationKind | string
  from: PublicUser | null
  /** How many people it stands for (a post's likes are one notification): "Ana and 3 others". */
  count?: number
  /** The server's own sentence, in English. */
  summary?: string
  post: number | null
  /** That post's title: people read the artwork's name, never the room's internal one. */
  post_title?: string | null
  room: string | null
  message: number | null
  text: string
  read: boolean
  created_at: string
}

export interface NotificationPage {
  notifications: AppNotification[]
  unread: number
  next_cursor: number | null
}

export const REPORT_REASONS = ['spam', 'nsfw', 'harassment', 'copyright', 'illegal', 'other'] as const
export type ReportReason = (typeof REPORT_REASONS)[number]
export type ReportKind = 'post' | 'message' | 'model'
export type ReportStatus = 'open' | 'hidden' | 'dismissed'

export interface Report {
  id: number
  kind: ReportKind
  target: string
  reason: ReportReason
  details: string
  status: ReportStatus
  reporter: PublicUser
  created_at: string
}

/** One reported thing in the moderators' queue; `subject` is a post card or a message (or null when gone). */
export interface ModerationItem {
  kind: ReportKind
  target: string
  count: number
  subject: (Partial<PostCard> & Partial<ChatMessage> & Record<string, unknown>) | null
  reports: Report[]
}

export interface ModerationPage {
  items: ModerationItem[]
  next_cursor: number | null
}
