// store.ts -- what the dashboard shows, derived from the events received:
// the items on screen (bounded), swim lanes (agents, sub-agents under their
// parent), the event rate, tool latencies and token use. Incoming events are
// buffered and committed a few times a second, or held while paused.
// makeItem and buildLanes serve the history view (views/SessionView.vue) too.

import { computed, reactive, shallowRef } from 'vue'
import type { AgentEvent, EventMsg, Item } from './types'
import { sidMs } from './types'

export const MAX_ITEMS = 4000
const RATE_SECONDS = 60

export function isError(ev: AgentEvent): boolean {
  return (
    ev.status === 'error' ||
    ev.event_type === 'PostToolUseFailure' ||
    ev.event_type === 'StopFailure'
  )
}

/** Lane key: the agent, or the session's main agent when none is named. */
export function laneOf(ev: AgentEvent): string {
  if (ev.agent_id) return ev.agent_id
  return 'main · ' + (ev.session_id ?? '?')
}

export interface Lane {
  key: string
  label: string
  role: string
  session: string | undefined
  depth: number
  count: number
  errors: number
}

let seq = 0

/** An event as the dashboard keeps it; sid/ms: its stream id and that id's
 * time (live), or its event id and store time (history). */
export function makeItem(sid: string, ms: number, ev: AgentEvent): Item {
  const ts = Date.parse(ev.timestamp)
  return { sid, ms, ts: Number.isFinite(ts) ? ts : ms, ev, lane: laneOf(ev), error: isError(ev), seq: ++seq }
}

/** Swim lanes of some items: one per agent, sub-agents right under their
 * parent (depth + 1), roots by session then first appearance. */
export function buildLanes(items: Item[]): Lane[] {
  const byKey = new Map<string, Lane & { parent?: string; first: number }>()
  for (const it of items) {
    let l = byKey.get(it.lane)
    if (!l) {
      l = {
        key: it.lane,
        label: it.ev.agent_id ?? it.lane,
        role: it.ev.agent_role ?? (it.ev.agent_id ? '' : 'main'),
        session: it.ev.session_id,
        depth: 0,
        count: 0,
        errors: 0,
        parent: it.ev.parent_agent_id,
        first: it.seq,
      }
      byKey.set(it.lane, l)
    }
    l.count++
    if (it.error) l.errors++
    if (!l.parent && it.ev.parent_agent_id) l.parent = it.ev.parent_agent_id
    if (!l.role && it.ev.agent_role) l.role = it.ev.agent_role
  }
  // a sub-agent whose parent has no events of its own still nests under it
  for (const l of [...byKey.values()]) {
    if (l.parent && l.parent !== l.key && !byKey.has(l.parent)) {
      byKey.set(l.parent, {
        key: l.parent, label: l.parent, role: '', session: l.session, depth: 0,
        count: 0, errors: 0, first: l.first,
      })
    }
  }
  const children = new Map<string, (typeof byKey extends Map<string, infer V> ? V : never)[]>()
  const roots = []
  for (const l of byKey.values()) {
    if (l.parent && l.parent !== l.key && byKey.has(l.parent)) {
      children.set(l.parent, [...(children.get(l.parent) ?? []), l])
    } else roots.push(l)
  }
  const out: Lane[] = []
  const seen = new Set<string>()
  const walk = (l: Lane & { first: number }, depth: number) => {
    if (seen.has(l.key)) return
    seen.add(l.key)
    out.push({ ...l, depth })
    for (const c of (children.get(l.key) ?? []).sort((a, b) => a.first - b.first)) walk(c, depth + 1)
  }
  roots.sort((a, b) => (a.session ?? '').localeCompare(b.session ?? '') || a.first - b.first)
  for (const r of roots) walk(r, 0)
  return out
}

export function createStore() {
  const items = shallowRef<Item[]>([])
  const ui = reactive({ paused: false, held: 0, now: Date.now() })
  const rate = shallowRef<number[]>(new Array(RATE_SECONDS).fill(0))
  let rateSecond = Math.floor(Date.now() / 1000)
  let buffer: Item[] = []

  function bumpRate(n: number) {
    const sec = Math.floor(Date.now() / 1000)
    let r = rate.value.slice()
    const shift = Math.min(sec - rateSecond, RATE_SECONDS)
    if (shift > 0) {
      r = r.slice(shift).concat(new Array(shift).fill(0))
      rateSecond = sec
    }
    r[RATE_SECONDS - 1] += n
    rate.value = r
  }

  function add(msgs: EventMsg[]) {
    for (const m of msgs) buffer.push(makeItem(m.id, sidMs(m.id), m.event))
    bumpRate(msgs.length)
    if (ui.paused) ui.held = buffer.length
  }

  function commit() {
    ui.now = Date.now()
    bumpRate(0)
    if (ui.paused || !buffer.length) return
    const next = items.value.concat(buffer)
    buffer = []
    items.value = next.length > MAX_ITEMS ? next.slice(next.length - MAX_ITEMS) : next
  }

  function prune(keep: (it: Item) => boolean) {
    items.value = items.value.filter(keep)
    buffer = buffer.filter(keep)
    ui.held = ui.paused ? buffer.length : 0
  }

  function setPaused(p: boolean) {
    ui.paused = p
    if (!p) {
      ui.held = 0
      commit()
    }
  }

  function clear() {
    items.value = []
    buffer = []
    ui.held = 0
  }

  const lanes = computed<Lane[]>(() => buildLanes(items.value))

  return { items, ui, rate, lanes, add, commit, prune, setPaused, clear }
}

export type Store = ReturnType<typeof createStore>
