import { useI18n } from 'vue-i18n'
import { ApiError } from '@/api/http'

/** Turns anything thrown by an API call into a sentence for people (the server's own message when it sent one). */
export function useErrorMessage() {
  const { t } = useI18n()
  return (err: unknown): string => {
    if (err instanceof ApiError) {
      if (err.retryAfter != null && err.code === 'rate_limited') {
        return `${err.message} ${t('auth.retryAfter', { seconds: err.retryAfter })}`
      }
      return err.message
    }
    return err instanceof Error && err.message ? err.message : t('common.error')
  }
}
