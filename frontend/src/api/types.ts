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
