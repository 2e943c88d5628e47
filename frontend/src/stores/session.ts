import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import * as authApi from '@/api/auth'
import * as usersApi from '@/api/users'
import { ApiError, setUnauthenticatedListener } from '@/api/http'
import type { User } from '@/api/types'

/** Who is signed in in this browser, and the actions that change it. */
export const useSessionStore = defineStore('session', () => {
  const user = ref<User | null>(null)
  /** True once GET /api/me has answered (either way). */
  const loaded = ref(false)
  let loading: Promise<User | null> | null = null
  /** The last load failed for another reason than 401 (server down): the next load() asks again. */
  let stale = false

  const signedIn = computed(() => user.value !== null)

  function set(next: User | null): User | null {
    user.value = next
    loaded.value = true
    stale = false
    return next
  }

  /** Asks the server who we are; a 401 means signed out. Concurrent calls share one request. */
  function load(force = false): Promise<User | null> {
    if (loaded.value && !force && !stale) return Promise.resolve(user.value)
    loading ??= authApi
      .fetchMe()
      .then(set, (err: unknown) => {
        if (err instanceof ApiError && err.status === 401) return set(null)
        // Show the signed-out header (with its Log in button) rather than nothing, and retry next time.
        set(null)
        stale = true
        throw err
      })
      .finally(() => {
        loading = null
      })
    return loading
  }

  async function login(username: string, password: string): Promise<User> {
    return set(await authApi.login({ username, password }))!
  }

  async function register(username: string, password: string, email?: string): Promise<User> {
    return set(await authApi.register({ username, password, email: email || undefined }))!
  }

  async function logout(): Promise<void> {
    try {
      await authApi.logout()
    } finally {
      set(null)
    }
  }

  async function updateProfile(changes: usersApi.ProfileChanges): Promise<User> {
    return set(await usersApi.updateProfile(changes))!
  }

  async function uploadAvatar(file: Blob): Promise<User> {
    return set(await usersApi.uploadAvatar(file))!
  }

  async function deleteAvatar(): Promise<User> {
    return set(await usersApi.deleteAvatar())!
  }

  async function changePassword(currentPassword: string, newPassword: string, revokeTokens = false): Promise<User> {
    return set(await authApi.changePassword(currentPassword, newPassword, revokeTokens))!
  }

  async function logoutEverywhere(): Promise<void> {
    await authApi.logoutEverywhere()
    set(null)
  }

  // A 401 on any request means the session is gone (expired, revoked elsewhere).
  setUnauthenticatedListener(() => {
    if (user.value) set(null)
  })

  return {
    user, loaded, signedIn,
    load, login, register, logout, logoutEverywhere, updateProfile, uploadAvatar, deleteAvatar, changePassword,
  }
})
