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

export async function createInvite(id: string, role: 'editor' | 'viewer'): Promise<{ token: string; role: string; path: string }> {
  return (await http.post<{ invite: { token: string; role: string; path: string } }>(`/api/collab/sessions/${id}/invites`, { role })).invite
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
