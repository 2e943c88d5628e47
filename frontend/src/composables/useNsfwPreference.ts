import { useLocalStorage } from '@vueuse/core'
import type { Ref } from 'vue'

export const NSFW_STORAGE_KEY = 'va.showNsfw'

let shared: Ref<boolean> | null = null

/** "Show NSFW": off until the viewer opts in; remembered in this browser, one value for every page. */
export function useNsfwPreference(): Ref<boolean> {
  shared ??= useLocalStorage<boolean>(NSFW_STORAGE_KEY, false)
  return shared
}
