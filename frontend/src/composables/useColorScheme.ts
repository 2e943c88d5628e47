import { usePreferredDark } from '@vueuse/core'
import { watch } from 'vue'

/**
 * Follows the system's light/dark preference, live, by toggling `html.dark`
 * (Element Plus's dark CSS variables key off that class).
 */
export function useColorScheme() {
  const dark = usePreferredDark()
  watch(dark, (value) => document.documentElement.classList.toggle('dark', value), { immediate: true })
  return { dark }
}
