import { computed, watch } from 'vue'
import { createI18n } from 'vue-i18n'
import elementEn from 'element-plus/es/locale/lang/en'
import elementZhCn from 'element-plus/es/locale/lang/zh-cn'
import en, { type Messages } from './locales/en'
import zhCN from './locales/zh-CN'

export const LOCALES = [
  { code: 'en', label: 'English' },
  { code: 'zh-CN', label: '简体中文' },
] as const
export type Locale = (typeof LOCALES)[number]['code']

export const LOCALE_STORAGE_KEY = 'va.locale'

function isLocale(value: unknown): value is Locale {
  return LOCALES.some((l) => l.code === value)
}

/** The remembered choice, else the browser's language (zh* → Chinese), else English. */
export function initialLocale(): Locale {
  try {
    const saved = localStorage.getItem(LOCALE_STORAGE_KEY)
    if (isLocale(saved)) return saved
  } catch {
    // Storage can be disabled (privacy settings); fall through to the browser language.
  }
  const languages = navigator.languages?.length ? navigator.languages : [navigator.language]
  return languages[0]?.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en'
}

export const i18n = createI18n<[Messages], Locale, false>({
  legacy: false,
  locale: initialLocale(),
  fallbackLocale: 'en',
  messages: { en, 'zh-CN': zhCN },
})

const ELEMENT_LOCALES = { en: elementEn, 'zh-CN': elementZhCn } as const

/** The current locale, a setter that remembers it, and Element Plus's matching locale. */
export function useLocale() {
  const locale = computed<Locale>({
    get: () => i18n.global.locale.value,
    set: (value) => setLocale(value),
  })
  const elementLocale = computed(() => ELEMENT_LOCALES[locale.value])
  return { locale, elementLocale, locales: LOCALES }
}

export function setLocale(value: Locale): void {
  i18n.global.locale.value = value
  try {
    localStorage.setItem(LOCALE_STORAGE_KEY, value)
  } catch {
    // Not remembered across visits then; the switch still works for this one.
  }
}

// <html lang> drives fonts, hyphenation and screen readers.
watch(
  () => i18n.global.locale.value,
  (value) => {
    document.documentElement.lang = value
  },
  { immediate: true },
)
