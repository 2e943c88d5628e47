import { useI18n } from 'vue-i18n'
import { ApiError } from '@/api/http'

/**
 * Turns anything thrown by an API call into a sentence for people (the server's own message when it sent one).
 * A rate limit's message already says when to try again, in words ("try again in 11 minutes"): it is not
 * said a second time from Retry-After.
 */
export function useErrorMessage() {
  const { t } = useI18n()
  return (err: unknown): string => {
    if (err instanceof ApiError) return err.message
    return err instanceof Error && err.message ? err.message : t('common.error')
  }
}
