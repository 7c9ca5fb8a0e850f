// errors.ts -- what to show of a failed event: a one-line message and a stack
// trace, looked for where hooks usually put them in the payload.

import type { AgentEvent } from './types'

function str(v: unknown): string {
  if (typeof v === 'string') return v
  if (v && typeof v === 'object') return JSON.stringify(v)
  return v === undefined || v === null ? '' : String(v)
}

export function stackOf(ev: AgentEvent): string {
  const p = (ev.payload ?? {}) as Record<string, unknown>
  const e = p.error && typeof p.error === 'object' ? (p.error as Record<string, unknown>) : {}
  return str(p.stack ?? p.stack_trace ?? p.traceback ?? e.stack ?? e.stack_trace ?? '')
}

export function errorText(ev: AgentEvent): string {
  const p = (ev.payload ?? {}) as Record<string, unknown>
  const e = p.error
  if (e && typeof e === 'object') return str((e as Record<string, unknown>).message ?? e)
  return str(e ?? p.message ?? p.stderr ?? p.reason ?? '')
}

/** A short excerpt of the payload for lists. */
export function excerpt(ev: AgentEvent, max = 160): string {
  const t = errorText(ev) || str(ev.payload ?? '')
  return t.length > max ? t.slice(0, max - 1) + '…' : t
}
