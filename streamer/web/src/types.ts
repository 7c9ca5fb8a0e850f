// types.ts -- what the streamer sends (README "Live dashboard", WebSocket protocol).

/** A normalised event as the collector stores it (README "Event contract"). */
export interface AgentEvent {
  id: string
  event_type: string
  timestamp: string
  received_at?: string
  session_id?: string
  agent_id?: string
  parent_agent_id?: string
  agent_role?: string
  source_app?: string
  tool?: string
  status?: string
  latency_ms?: number
  cost_usd?: number
  tokens?: { input?: number; output?: number; cache_read?: number; cache_creation?: number }
  trace_id?: string
  span_id?: string
  payload?: Record<string, unknown>
}

/** {"type":"event","id":"<stream id>","event":{...}} */
export interface EventMsg {
  type: 'event'
  id: string
  event: AgentEvent
}

export type ServerMsg =
  | EventMsg
  | { type: 'hello'; filter: string; replay: string; server_ms: number; protocol: number }
  | { type: 'replay_done'; count: number; covered: string; complete: boolean; note?: string }
  | { type: 'filter'; filter: string }
  | { type: 'pong'; t?: number; server_ms: number; queued: number }
  | { type: 'error'; error: { status: number; field?: string; message: string } }

/** An event as the dashboard keeps it. */
export interface Item {
  sid: string // stream id
  ms: number // stream id time: when Redis accepted the event
  ts: number // event time (epoch ms)
  ev: AgentEvent
  lane: string // swim lane key
  error: boolean
  seq: number // arrival order, for stable keys
}

/** Stream id "1700000000000-3" -> 1700000000000. */
export function sidMs(sid: string): number {
  const dash = sid.indexOf('-')
  return Number(dash < 0 ? sid : sid.slice(0, dash))
}

/** Compare two stream ids numerically. */
export function sidCmp(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number)
  const [bm, bs] = b.split('-').map(Number)
  return am !== bm ? am - bm : (as || 0) - (bs || 0)
}
