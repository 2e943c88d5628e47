import { http } from './http'
import type { MessagePage, PublicUser } from './types'

/** Room names: 1–64 characters of a–z 0–9 _ - : . (a room beside a post is `post:<id>`). */
export const ROOM_NAME_RE = /^[a-z0-9_\-:.]{1,64}$/
export const MESSAGE_MAX_CHARS = 2000
export const HISTORY_PAGE_SIZE = 50

/** Room names are safe in a path as they are; escaping `:` would make long names overrun the server's 64-character route. */
function roomPath(room: string): string {
  if (!ROOM_NAME_RE.test(room)) throw new Error(`Not a room name: ${JSON.stringify(room)}`)
  return `/api/rooms/${room}`
}

export function roomTopic(room: string): string {
  return `room:${room}`
}

/** A page of a room's history, newest first; `before` is the previous page's `next_cursor`. */
export async function fetchMessages(room: string, before?: number | null, limit = HISTORY_PAGE_SIZE): Promise<MessagePage> {
  const query = new URLSearchParams({ limit: String(limit) })
  if (before != null) query.set('before', String(before))
  return http.get<MessagePage>(`${roomPath(room)}/messages?${query}`)
}

/** Who is in the room now. */
export async function fetchPresence(room: string): Promise<PublicUser[]> {
  return (await http.get<{ users: PublicUser[] }>(`${roomPath(room)}/presence`)).users
}

/** A room's settings: may `/imagine` be used there, and may the caller change that. */
export interface RoomSettings {
  name: string
  imagine: boolean
  can_manage: boolean
  /** Someone opened the room (the first to speak in it owns it). */
  owned: boolean
}

export async function fetchRoomSettings(room: string): Promise<RoomSettings> {
  return (await http.get<{ room: RoomSettings }>(roomPath(room))).room
}

/** Turn `/imagine` on or off (the room's owner or a moderator). */
export async function setRoomImagine(room: string, imagine: boolean): Promise<RoomSettings> {
  return (await http.patch<{ room: RoomSettings }>(roomPath(room), { imagine })).room
}
