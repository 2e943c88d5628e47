import { http } from './http'
import type { ApiToken } from './types'

export const TOKEN_NAME_MAX_CHARS = 64

export interface CreatedToken {
  /** The secret; the server shows it this once and never again. */
  token: string
  api_token: ApiToken
}

export async function listTokens(): Promise<ApiToken[]> {
  return (await http.get<{ tokens: ApiToken[] }>('/api/tokens')).tokens
}

export function createToken(name: string): Promise<CreatedToken> {
  return http.post<CreatedToken>('/api/tokens', { name })
}

export async function revokeToken(id: number): Promise<void> {
  await http.delete<void>(`/api/tokens/${id}`)
}
