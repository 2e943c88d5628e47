import { useLocalStorage } from '@vueuse/core'
import { effectScope, type Ref } from 'vue'

export const NSFW_STORAGE_KEY = 'va.showNsfw'

let shared: Ref<boolean> | null = null

/** "Show NSFW": off until the viewer opts in; remembered in this browser, one value for every page. */
export function useNsfwPreference(): Ref<boolean> {
  // In a detached scope: the first page to ask must not take the storage watcher with it when it unmounts.
  shared ??= effectScope(true).run(() => useLocalStorage<boolean>(NSFW_STORAGE_KEY, false))!
  return shared
}
