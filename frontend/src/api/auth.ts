import { http } from './http'
import type { User, UserEnvelope } from './types'

export interface Credentials {
  username: string
  password: string
}

export interface Registration extends Credentials {
  email?: string
}

/** Create an account; the server signs it in (session cookie). */
export async function register(data: Registration): Promise<User> {
  return (await http.post<UserEnvelope>('/api/auth/register', data)).user
}

export async function login(data: Credentials): Promise<User> {
  return (await http.post<UserEnvelope>('/api/auth/login', data)).user
}

export async function logout(): Promise<void> {
  await http.post<void>('/api/auth/logout')
}

/** The signed-in user; rejects with ApiError 401 when signed out. */
export async function fetchMe(): Promise<User> {
  return (await http.get<UserEnvelope>('/api/me')).user
}

/** Change the password; every other session is signed out, and with `revokeTokens` every API token too. */
export async function changePassword(currentPassword: string, newPassword: string, revokeTokens = false): Promise<User> {
  const body = { current_password: currentPassword, new_password: newPassword, revoke_tokens: revokeTokens }
  return (await http.post<UserEnvelope>('/api/me/password', body)).user
}

/** Revoke every session and API token of mine, this browser's too. */
export async function logoutEverywhere(): Promise<void> {
  await http.post<void>('/api/auth/logout-everywhere')
}
