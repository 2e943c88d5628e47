/**
 * A thin fetch wrapper: JSON in and out, same-origin cookies, Tornado's XSRF
 * token on every state-changing request, and one error type for every failure.
 */

export const XSRF_COOKIE = '_xsrf'
export const XSRF_HEADER = 'X-XSRFToken'
/** The server sets the XSRF cookie when this is read (and on index.html). */
const XSRF_PRIMER_PATH = '/api/me'

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** Any failed request: an HTTP error from the server, or no answer at all (status 0). */
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  /** Seconds, from a Retry-After header (rate limits), when the server sent one. */
  readonly retryAfter: number | null
  /** The input the error is about (`error.data.field`), when the server named one. */
  readonly field: string | null

  constructor(status: number, code: string, message: string, retryAfter: number | null = null,
    field: string | null = null) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.retryAfter = retryAfter
    this.field = field
  }
}

export interface RequestOptions {
  /** Sent as JSON. */
  json?: unknown
  /** Sent as is (e.g. a File), with `contentType`. */
  body?: BodyInit
  contentType?: string
  signal?: AbortSignal
}

type UnauthenticatedListener = () => void
let onUnauthenticated: UnauthenticatedListener | null = null

/** Called whenever the server answers 401 `unauthenticated` (e.g. the session expired). */
export function setUnauthenticatedListener(listener: UnauthenticatedListener | null): void {
  onUnauthenticated = listener
}

export function readCookie(name: string): string | null {
  for (const part of document.cookie.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) {
      const raw = part.slice(eq + 1).trim()
      try {
        return decodeURIComponent(raw)
      } catch {
        return raw
      }
    }
  }
  return null
}

let xsrfPriming: Promise<void> | null = null

/** Makes sure the `_xsrf` cookie exists, asking the server for one if needed. */
async function ensureXsrfCookie(force = false): Promise<string | null> {
  if (!force) {
    const existing = readCookie(XSRF_COOKIE)
    if (existing) return existing
  }
  xsrfPriming ??= fetch(XSRF_PRIMER_PATH, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
    .then(() => undefined, () => undefined)
    .finally(() => {
      xsrfPriming = null
    })
  await xsrfPriming
  return readCookie(XSRF_COOKIE)
}

const GENERIC_MESSAGES: Record<number, string> = {
  0: 'The server could not be reached. Check your connection and try again.',
  413: 'That upload is too large.',
  502: 'The server is not answering right now. Try again in a moment.',
  503: 'The server is busy or starting up. Try again in a moment.',
  504: 'The server took too long to answer. Try again in a moment.',
}

async function toApiError(response: Response): Promise<ApiError> {
  const retryHeader = response.headers.get('Retry-After')
  const retryAfter = retryHeader && /^\d+$/.test(retryHeader) ? Number(retryHeader) : null
  let code = 'http_error'
  let message = GENERIC_MESSAGES[response.status] ?? `The request failed (HTTP ${response.status}).`
  let field: string | null = null
  try {
    const body: unknown = await response.json()
    const error = (body as { error?: { code?: unknown; message?: unknown; data?: { field?: unknown } } } | null)?.error
    if (error && typeof error.code === 'string') code = error.code
    if (error && typeof error.message === 'string' && error.message) message = error.message
    if (error && typeof error.data?.field === 'string') field = error.data.field
  } catch {
    // Not JSON (a proxy's HTML page, an empty body): keep the generic message.
  }
  return new ApiError(response.status, code, message, retryAfter, field)
}

async function send(method: HttpMethod, path: string, options: RequestOptions, xsrf: string | null): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  let body: BodyInit | undefined
  if (options.json !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(options.json)
  } else if (options.body !== undefined) {
    body = options.body
    if (options.contentType) headers['Content-Type'] = options.contentType
  }
  if (xsrf) headers[XSRF_HEADER] = xsrf
  try {
    return await fetch(path, { method, headers, body, credentials: 'same-origin', signal: options.signal })
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err
    throw new ApiError(0, 'network_error', GENERIC_MESSAGES[0]!)
  }
}

/** One request; resolves to the parsed JSON body (undefined for 204), rejects with ApiError. */
export async function request<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
  return (await requestWithStatus<T>(method, path, options)).data
}

/** Like `request`, with the HTTP status too (e.g. 201 created vs 200 already there). */
export async function requestWithStatus<T>(
  method: HttpMethod, path: string, options: RequestOptions = {},
): Promise<{ status: number; data: T }> {
  const needsXsrf = method !== 'GET'
  let response = await send(method, path, options, needsXsrf ? await ensureXsrfCookie() : null)
  if (needsXsrf && response.status === 403 && !(options.body instanceof ReadableStream)) {
    // The cookie may have been missing or replaced (another tab signed out): fetch a fresh one once.
    const error = await toApiError(response.clone())
    if (error.code === 'xsrf') {
      response = await send(method, path, options, await ensureXsrfCookie(true))
    }
  }
  if (!response.ok) {
    const error = await toApiError(response)
    if (error.status === 401 && error.code === 'unauthenticated') onUnauthenticated?.()
    throw error
  }
  if (response.status === 204) return { status: 204, data: undefined as T }
  const text = await response.text()
  return { status: response.status, data: (text ? JSON.parse(text) : undefined) as T }
}

export const http = {
  get: <T>(path: string, options?: RequestOptions) => request<T>('GET', path, options),
  post: <T>(path: string, json?: unknown) => request<T>('POST', path, { json }),
  patch: <T>(path: string, json?: unknown) => request<T>('PATCH', path, { json }),
  put: <T>(path: string, options: RequestOptions) => request<T>('PUT', path, options),
  delete: <T>(path: string) => request<T>('DELETE', path),
}
