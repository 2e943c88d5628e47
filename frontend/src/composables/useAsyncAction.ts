/**
 * The busy flag, the error and the try/catch/finally that every form's submit needs, once.
 *
 *   const save = useAsyncAction(async () => { await api.save(form) ; ElMessage.success(…) })
 *   <el-button :loading="save.busy.value" @click="save.run()">   <el-alert v-if="save.error.value" …>
 *
 * A second run while one is in flight is ignored (a double click submits once). The error is kept both as
 * the sentence for people and as the server's code and field, so a form can mark the input it names.
 */

import { ref, shallowRef, type Ref } from 'vue'
import { ApiError } from '@/api/http'
import { RealtimeError } from '@/realtime/socket'
import { useErrorMessage } from '@/composables/useErrorMessage'

/** A refused request, as a page shows it: the server's code, message and the input it named (`data.field`). */
export interface ActionError {
  code: string
  message: string
  retryAfter: number | null
  field: string | null
}

export function toActionError(err: unknown): ActionError {
  if (err instanceof ApiError || err instanceof RealtimeError) {
    return { code: err.code, message: err.message, retryAfter: err.retryAfter, field: err.field }
  }
  return { code: 'error', message: err instanceof Error ? err.message : String(err), retryAfter: null, field: null }
}

export interface AsyncAction<A extends unknown[], R> {
  busy: Ref<boolean>
  /** The last failure as a sentence for people; '' when the last run succeeded (or none ran). */
  error: Ref<string>
  /** The last failure as the server described it. */
  failure: Ref<ActionError | null>
  /** Runs the action; resolves with its result, or undefined when it failed or one was already running. */
  run: (...args: A) => Promise<R | undefined>
  clear: () => void
}

export function useAsyncAction<A extends unknown[], R>(action: (...args: A) => Promise<R>): AsyncAction<A, R> {
  const errorMessage = useErrorMessage()
  const busy = ref(false)
  const error = ref('')
  const failure = shallowRef<ActionError | null>(null)

  function clear(): void {
    error.value = ''
    failure.value = null
  }

  async function run(...args: A): Promise<R | undefined> {
    if (busy.value) return undefined
    busy.value = true
    clear()
    try {
      return await action(...args)
    } catch (err) {
      error.value = errorMessage(err)
      failure.value = toActionError(err)
      return undefined
    } finally {
      busy.value = false
    }
  }

  return { busy, error, failure, run, clear }
}
