// filter.ts -- filter chips, the streamer's filter grammar and the page URL.
//
// Chips of one key are OR-ed, different keys AND-ed; this is exactly the
// server grammar (README "Live dashboard"): `type:A|B,session:s1`. The page
// URL keeps the same state as repeated query parameters, so a view can be
// shared: `/?type=A&type=B&session=s1&window=15m`.

import type { AgentEvent } from './types'

export const KEYS = ['session', 'agent', 'parent', 'type', 'tool', 'status', 'role', 'app'] as const
export type Key = (typeof KEYS)[number]

export const FIELD: Record<Key, keyof AgentEvent> = {
  session: 'session_id',
  agent: 'agent_id',
  parent: 'parent_agent_id',
  type: 'event_type',
  tool: 'tool',
  status: 'status',
  role: 'agent_role',
  app: 'source_app',
}

export interface Chip {
  key: Key
  value: string // may end in '*' for a prefix
  neg: boolean
}

export const WINDOWS = ['1m', '5m', '15m', '1h', '6h'] as const
export type Window = (typeof WINDOWS)[number]
export const WINDOW_MS: Record<Window, number> = {
  '1m': 60e3,
  '5m': 300e3,
  '15m': 900e3,
  '1h': 3600e3,
  '6h': 21600e3,
}

export interface ViewState {
  chips: Chip[]
  window: Window
}

/** Escape a value for the grammar; a trailing '*' stays a prefix marker. */
function escapeValue(v: string): string {
  const prefix = v.endsWith('*') && !v.endsWith('\\*')
  const body = prefix ? v.slice(0, -1) : v
  return body.replace(/[\\,|*]/g, (c) => '\\' + c) + (prefix ? '*' : '')
}

/** Chips -> server filter text. */
export function toFilter(chips: Chip[]): string {
  const groups = new Map<string, string[]>()
  for (const c of chips) {
    const k = (c.neg ? '!' : '') + c.key
    groups.set(k, [...(groups.get(k) ?? []), escapeValue(c.value)])
  }
  // a negated group must exclude every value: !type:A|B
  return [...groups].map(([k, vs]) => `${k}:${vs.join('|')}`).join(',')
}

/** Same semantics as streamer/filter.c, for pruning what is on screen. */
export function matches(chips: Chip[], ev: AgentEvent): boolean {
  const groups = new Map<string, Chip[]>()
  for (const c of chips) groups.set((c.neg ? '!' : '') + c.key, [...(groups.get((c.neg ? '!' : '') + c.key) ?? []), c])
  for (const [, cs] of groups) {
    const v = ev[FIELD[cs[0].key]]
    const hit =
      typeof v === 'string' &&
      cs.some((c) => (c.value.endsWith('*') ? v.startsWith(c.value.slice(0, -1)) : v === c.value))
    if (hit === cs[0].neg) return false
  }
  return true
}

/** URL query -> view state (unknown parameters are ignored). */
export function fromQuery(search: string): ViewState {
  const q = new URLSearchParams(search)
  const chips: Chip[] = []
  for (const key of KEYS) {
    for (const v of q.getAll(key)) if (v) chips.push({ key, value: v, neg: false })
    for (const v of q.getAll('not-' + key)) if (v) chips.push({ key, value: v, neg: true })
  }
  const w = q.get('window') as Window | null
  return { chips, window: w && WINDOWS.includes(w) ? w : '15m' }
}

export function toQuery(s: ViewState): string {
  const q = new URLSearchParams()
  for (const c of s.chips) q.append((c.neg ? 'not-' : '') + c.key, c.value)
  if (s.window !== '15m') q.set('window', s.window)
  const t = q.toString()
  return t ? '?' + t : ''
}

/** True when `next` can only match fewer events than `prev` (chips were only
 * added, and none of them widens an existing OR group): then the open stream
 * can just switch filter; otherwise the view needs its history again. */
export function narrows(prev: Chip[], next: Chip[]): boolean {
  const same = (a: Chip, b: Chip) => a.key === b.key && a.value === b.value && a.neg === b.neg
  if (!prev.every((p) => next.some((n) => same(p, n)))) return false
  return next
    .filter((n) => !prev.some((p) => same(p, n)))
    .every((n) => n.neg || !prev.some((p) => !p.neg && p.key === n.key))
}
