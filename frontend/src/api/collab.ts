import { http } from './http'
import type { Job, PublicUser } from './types'

export type CollabRole = 'owner' | 'editor' | 'viewer'

/** The document's plain values (the CRDT itself travels on the socket). */
export interface CollabSettings {
  model?: string
  sampler?: string
  steps?: number
  guidance?: number
  width?: number
  height?: number
  seed?: number | null
}

export interface CollabDocument {
  prompt: string
  negative_prompt: string
  settings: CollabSettings
}

export interface CollabSession {
  id: string
  title: string
  owner: number
  created_at: string
  closed: boolean
  closed_at: string | null
  role?: CollabRole
}

export interface CollabMember {
  user: PublicUser
  role: CollabRole
  joined_at: string
}

export interface CollabRender {
  id: string
  session: string
  job: string
  by: PublicUser
  snapshot: CollabDocument
  created_at: string
}

export interface CollabDetails {
  session: CollabSession
  role: CollabRole
  members: CollabMember[]
  renders: CollabRender[]
  document: CollabDocument
}

export function collabTopic(id: string): string {
  return `collab:${id}`
}

/** A new session owned by me; its document starts from these values (e.g. the Generate form's draft). */
export async function createSession(body: { title?: string } & Partial<CollabDocument>): Promise<CollabSession> {
  return (await http.post<{ session: CollabSession }>('/api/collab/sessions', body)).session
}

export async function fetchMySessions(): Promise<CollabSession[]> {
  return (await http.get<{ sessions: CollabSession[] }>('/api/collab/sessions')).sessions
}

export function fetchSession(id: string): Promise<CollabDetails> {
  return http.get<CollabDetails>(`/api/collab/sessions/${id}`)
}

export async function closeSession(id: string): Promise<CollabSession> {
  return (await http.delete<{ session: CollabSession }>(`/api/collab/sessions/${id}`)).session
}

/** An invitation as its owner sees it (never its secret); `id` is the secret's sha256. */
export interface CollabInvite {
  id: string
  role: 'editor' | 'viewer'
  created_at: string
  expires_at: string
  max_uses: number | null
  uses: number
  revoked: boolean
}

/** A new link: it admits people until it expires or `max_uses` (null: no limit) have joined with it. */
export async function createInvite(
  id: string, role: 'editor' | 'viewer', terms: { expires_in_secs?: number; max_uses?: number | null } = {},
): Promise<CollabInvite & { token: string; path: string }> {
  return (await http.post<{ invite: CollabInvite & { token: string; path: string } }>(
    `/api/collab/sessions/${id}/invites`, { role, ...terms })).invite
}

/** The links that still admit someone (owner only). */
export async function fetchInvites(id: string): Promise<CollabInvite[]> {
  return (await http.get<{ invites: CollabInvite[] }>(`/api/collab/sessions/${id}/invites`)).invites
}

export async function revokeInvite(id: string, inviteId: string): Promise<void> {
  await http.delete<void>(`/api/collab/sessions/${id}/invites/${inviteId}`)
}

export function acceptInvite(token: string): Promise<{ session: CollabSession; role: CollabRole }> {
  return http.post(`/api/collab/invites/${encodeURIComponent(token)}/accept`)
}

export async function removeMember(id: string, userId: number): Promise<void> {
  await http.delete<void>(`/api/collab/sessions/${id}/members/${userId}`)
}

export function startRender(id: string): Promise<{ render: CollabRender; job: Job }> {
  return http.post(`/api/collab/sessions/${id}/renders`)
}

export function restoreRender(id: string, renderId: string): Promise<{ document: CollabDocument }> {
  return http.post(`/api/collab/sessions/${id}/renders/${renderId}/restore`)
}
