import { http, request } from './http'
import type { ChatMessage, MessagePage, PublicUser } from './types'
import { realtime, type ServerEvent } from '@/realtime/socket'

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

// The chat ops on the shared socket (docs/PROTOCOL.md): each answers with the stored message.

interface MessageAck extends ServerEvent {
  message?: ChatMessage
}

/**
 * Sends a message. `ref` makes a retry safe: the same ref with the same text is stored once, so the
 * socket may resend it after a reconnect.
 */
export async function sendMessage(
  room: string, text: string, ref: string, timeoutMs: number, photo?: string | null,
): Promise<ChatMessage | null> {
  const frame = photo ? { op: 'chat.send', room, text, photo } : { op: 'chat.send', room, text }
  const ack = await realtime.request<MessageAck>(frame, { ref, retry: true, timeoutMs })
  return ack.message ?? null
}

export async function editMessage(room: string, message: number, text: string): Promise<ChatMessage | null> {
  return (await realtime.request<MessageAck>({ op: 'chat.edit', room, message, text })).message ?? null
}

export async function deleteMessage(room: string, message: number): Promise<void> {
  await realtime.request({ op: 'chat.delete', room, message })
}

/** Fire and forget: the room shows "… is typing" for a few seconds. */
export function sendTyping(room: string): void {
  realtime.send({ op: 'typing', room })
}

/** A room's settings: may `/imagine` be used there, may photos be attached (`/stylize`), and may the caller change that. */
export interface RoomSettings {
  name: string
  imagine: boolean
  /** Photos may be attached for `/stylize` (off until the room's owner or a moderator allows them). */
  uploads: boolean
  can_manage: boolean
  /** Someone opened the room (the first to speak in it owns it). */
  owned: boolean
}

export async function fetchRoomSettings(room: string): Promise<RoomSettings> {
  return (await http.get<{ room: RoomSettings }>(roomPath(room))).room
}

/** Turn `/imagine` or photo uploads on or off (the room's owner or a moderator). */
export async function updateRoomSettings(room: string, change: { imagine?: boolean; uploads?: boolean }): Promise<RoomSettings> {
  return (await http.patch<{ room: RoomSettings }>(roomPath(room), change)).room
}

/** A photo kept for a `/stylize` in the room: `id` goes with the message (`sendMessage`'s `photo`). */
export interface RoomPhoto {
  id: string
  width: number
  height: number
}

/** Uploads a photo (the raw file) for a `/stylize` in a room that takes uploads; errors name the reason. */
export async function uploadRoomPhoto(room: string, photo: Blob): Promise<RoomPhoto> {
  const answer = await request<{ photo: RoomPhoto }>('POST', `${roomPath(room)}/photos`, {
    body: photo, contentType: photo.type || 'application/octet-stream',
  })
  return answer.photo
}
