import { http } from './http'

/** Whether Discord is set up on this server, and the Discord user ids linked to my account. */
export interface DiscordLinks {
  enabled: boolean
  links: string[]
}

export function fetchDiscordLinks(): Promise<DiscordLinks> {
  return http.get<DiscordLinks>('/api/discord/link')
}

/** A one-time code to send with `/link` in Discord (valid `expires_in` seconds). */
export function createDiscordLinkCode(): Promise<{ code: string; expires_in: number }> {
  return http.post<{ code: string; expires_in: number }>('/api/discord/link-code')
}

export function unlinkDiscord(): Promise<void> {
  return http.delete<void>('/api/discord/link')
}
