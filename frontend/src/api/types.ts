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
