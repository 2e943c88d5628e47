/** The gallery and posts (docs/openapi.yaml: /api/posts…). */

import { http } from './http'
import type { LikeState, Post, PostPage } from './types'

export const TITLE_MAX_CHARS = 120
export const DESCRIPTION_MAX_CHARS = 5000
export const MAX_TAGS = 10
export const TAG_RE = /^[\w-]{1,40}$/u
export const GALLERY_PAGE_SIZE = 24

export type GallerySort = 'new' | 'top'
export type GalleryPeriod = 'day' | 'week' | 'all'

/** What a gallery page asks for; empty fields are left out of the query. */
export interface GalleryQuery {
  sort?: GallerySort
  period?: GalleryPeriod
  tag?: string
  model?: string
  /** A username: that user's posts. */
  user?: string
  /** The posts of people I follow. */
  following?: boolean
}

export function galleryParams(query: GalleryQuery, cursor?: string | null, limit = GALLERY_PAGE_SIZE): URLSearchParams {
  const params = new URLSearchParams()
  if (query.sort && query.sort !== 'new') params.set('sort', query.sort)
  if (query.sort === 'top' && query.period && query.period !== 'all') params.set('period', query.period)
  if (query.tag) params.set('tag', query.tag.toLowerCase())
  if (query.model) params.set('model', query.model)
  if (query.user) params.set('user', query.user)
  if (query.following) params.set('feed', 'following')
  if (cursor) params.set('cursor', cursor)
  params.set('limit', String(limit))
  return params
}

export function fetchPosts(query: GalleryQuery, cursor?: string | null, signal?: AbortSignal): Promise<PostPage> {
  return http.get<PostPage>(`/api/posts?${galleryParams(query, cursor)}`, { signal })
}

export async function fetchPost(id: number | string): Promise<Post> {
  return (await http.get<{ post: Post }>(`/api/posts/${encodeURIComponent(String(id))}`)).post
}

export interface PublishRequest {
  job: string
  /** Default: every image of the job. */
  images?: string[]
  title: string
  description?: string
  tags?: string[]
  nsfw?: boolean
  /** A stylized photo's post: show the photo it was made from too. */
  show_original?: boolean
}

export async function publishPost(body: PublishRequest): Promise<Post> {
  return (await http.post<{ post: Post }>('/api/posts', body)).post
}

export interface PostChanges {
  title?: string
  description?: string
  tags?: string[]
  nsfw?: boolean
}

export async function editPost(id: number, changes: PostChanges): Promise<Post> {
  return (await http.patch<{ post: Post }>(`/api/posts/${id}`, changes)).post
}

export function deletePost(id: number): Promise<void> {
  return http.delete<void>(`/api/posts/${id}`)
}

export function setLiked(id: number, liked: boolean): Promise<LikeState> {
  return liked ? http.put<LikeState>(`/api/posts/${id}/like`, {}) : http.delete<LikeState>(`/api/posts/${id}/like`)
}

/** Tags as the server stores them: lower-case, `#` dropped, duplicates once. */
export function normaliseTags(tags: string[]): string[] {
  return [...new Set(tags.map((tag) => tag.trim().replace(/^#/, '').toLowerCase()).filter(Boolean))]
}
