import { http } from './http'
import type { User, UserEnvelope } from './types'

export const AVATAR_TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/gif'] as const
export const AVATAR_MAX_BYTES = 5 * 1024 * 1024
export const DISPLAY_NAME_MAX_CHARS = 64
export const BIO_MAX_CHARS = 500

export interface ProfileChanges {
  display_name?: string
  bio?: string
  /** An empty string removes the address. */
  email?: string
}

export async function updateProfile(changes: ProfileChanges): Promise<User> {
  return (await http.patch<UserEnvelope>('/api/me', changes)).user
}

/** Uploads the file's bytes as the request body; the server re-encodes and resizes it. */
export async function uploadAvatar(file: Blob): Promise<User> {
  const contentType = file.type || 'application/octet-stream'
  return (await http.put<UserEnvelope>('/api/me/avatar', { body: file, contentType })).user
}

export async function deleteAvatar(): Promise<User> {
  return (await http.delete<UserEnvelope>('/api/me/avatar')).user
}

/** Anyone's public profile; rejects with ApiError 404 when there is no such user. */
export async function fetchUser(username: string): Promise<User> {
  return (await http.get<UserEnvelope>(`/api/users/${encodeURIComponent(username)}`)).user
}

/** Users whose name starts with `prefix` (at most 10, signed in): the @mention autocomplete. */
export async function searchUsers(prefix: string): Promise<User[]> {
  return (await http.get<{ users: User[] }>(`/api/users?q=${encodeURIComponent(prefix)}`)).users
}
