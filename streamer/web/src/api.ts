// api.ts -- the collector's history API (README "History API"), read from
// the dashboard across origins. The base URL comes from the streamer's
// /config.json (streamer.api_url); the collector must allow this page's
// origin (collector.cors_origin). Every API request goes through apiFetch(),
// the one place that sets request headers (e.g. an API key).

import { apiKey, KEY_STORE } from './stream'
import type { AgentEvent } from './types'

export interface Tokens {
  input: number | null
  output: number | null
  cache_read: number | null
  cache_creation: number | null
  total?: number | null
}

export interface SessionSummary {
  session_id: string
  first_seen: string
  last_seen: string
  duration_s: number
  events: number
  errors: number
  event_types: Record<string, number>
  agents: string[]
  source_app: string | null
  tokens: Tokens
  cost_usd: number | null
  transcript_messages: number
}

export interface TranscriptInfo {
  agent_id: string | null
  transcript_path: string | null
  messages: number
  first_ts: string
  last_ts: string
  model: string | null
  tokens: Tokens
}

export interface Message {
  id: string
  agent_id: string | null
  role: string
  text: string | null
  model: string | null
  tokens: Tokens | null
  timestamp: string
  truncated?: boolean
}

export interface SearchHit {
  session_id: string
  agent_id: string | null
  message_id: string
  timestamp: string
  role: string
  model: string | null
  rank: number
  snippet: string
}

/** An event as GET /events returns it: the event contract, absent fields null. */
export type StoredEvent = { [K in keyof AgentEvent]: AgentEvent[K] | null } & { id: string; stored_at?: string }

export interface Page {
  next_cursor: string | null
}

/** A failed request: HTTP status (0: network or CORS), the parameter named
 * by the API (error.field) and a message meant for a person. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public field?: string,
  ) {
    super(message)
  }
}

let config: Promise<string> | null = null

/** The history API's base URL from /config.json ('' = not configured). */
export function apiBase(): Promise<string> {
  config ??= fetch('/config.json', { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : { api_url: '' }))
    .then((c: { api_url?: unknown }) => (typeof c.api_url === 'string' ? c.api_url.replace(/\/+$/, '') : ''))
    .catch(() => '')
  return config
}

export type Params = Record<string, string | number | boolean | null | undefined>

/** GET path?params from the history API and parse the JSON answer; throws
 * ApiError with the API's own message (or what went wrong on the way). */
export async function apiFetch<T>(path: string, params: Params = {}, asked = false): Promise<T> {
  const base = await apiBase()
  if (!base)
    throw new ApiError(0, 'the history API is not configured: set streamer.api_url (and collector.cors_origin on the collector)')
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v))
  const qs = q.toString()
  const url = base + path + (qs ? '?' + qs : '')
  const headers: Record<string, string> = { Accept: 'application/json' }
  const key = apiKey() // API keys configured: the read key the live view asked for
  if (key)
    headers.Authorization = `Bearer ${key}`
  let r: Response
  try {
    r = await fetch(url, { headers, mode: 'cors', credentials: 'omit', cache: 'no-store' })
  } catch {
    throw new ApiError(0, `cannot reach the history API at ${base} (is the collector running, and is its ` +
      `collector.cors_origin set to ${location.origin}?)`)
  }
  let body: unknown = null
  try {
    body = await r.json()
  } catch {
    /* not JSON: reported below */
  }
  if ((r.status === 401 || r.status === 403) && !asked) {
    // keys configured on the collector: ask once for a read key, then retry
    const entered = window.prompt(r.status === 401
      ? 'The history API needs an API key with the read role:'
      : 'This API key lacks the read role. Enter another:')
    if (entered && entered.trim()) {
      localStorage.setItem(KEY_STORE, entered.trim())
      return apiFetch<T>(path, params, true)
    }
  }
  if (!r.ok) {
    const e = (body as { error?: { message?: string; field?: string } } | null)?.error
    throw new ApiError(r.status, e?.message ? `${r.status}: ${e.message}` : `HTTP ${r.status} from ${path}`, e?.field)
  }
  if (body === null) throw new ApiError(r.status, `${path}: the answer is not JSON`)
  return body as T
}

/** Walk a paginated list (`key` holds the rows; cursor -> next_cursor) from
 * `cursor` until the end or until at least `budget` rows came, handing each
 * page to onPage. Returns the cursor to go on with; null at the end. */
export async function apiPages<T>(path: string, params: Params, key: string, cursor: string | null, budget: number,
  onPage: (rows: T[]) => boolean | void): Promise<string | null> {
  let n = 0
  do {
    const r = await apiFetch<Record<string, T[]> & Page>(path, { ...params, cursor })
    const rows = r[key] ?? []
    if (onPage(rows) === false) return r.next_cursor // the caller went away
    cursor = r.next_cursor
    n += rows.length
  } while (cursor && n < budget)
  return cursor
}
