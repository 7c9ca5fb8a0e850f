// stream.ts -- the WebSocket to the streamer: connect with the current filter
// (and backlog= the first time, since=<last stream id> after a drop, so the
// view has no gap), change the filter on the open socket, reconnect with
// backoff, and report status and lag.
// API keys: when the streamer has keys configured, the key (kept in
// localStorage under KEY_STORE) travels as the subprotocol
// "agent-obs.key.<key>"; a connection refused before its hello makes us ask
// GET /stream with the key whether it is the key, and prompt for one.

import { reactive } from 'vue'
import type { EventMsg, ServerMsg } from './types'
import { sidCmp, sidMs } from './types'

export const KEY_STORE = 'agent-obs.key'

/** The stored API key ('' when none): for the WebSocket and for fetches
 * (Authorization: Bearer). */
export function apiKey(): string {
  try {
    return localStorage.getItem(KEY_STORE) ?? ''
  } catch {
    return ''
  }
}

export type Phase = 'connecting' | 'replaying' | 'live' | 'reconnecting' | 'error'

export interface StreamState {
  phase: Phase
  detail: string // last close reason, filter error, replay note
  filter: string // as acknowledged by the server
  lagMs: number // newest event: now - stream id time (median of recent)
  lastId: string // newest stream id seen
  received: number
  reconnects: number
}

export interface StreamOptions {
  backlog: number
  onEvents: (msgs: EventMsg[], replay: boolean) => void
}

export class Stream {
  state: StreamState = reactive({
    phase: 'connecting',
    detail: '',
    filter: '',
    lagMs: 0,
    lastId: '',
    received: 0,
    reconnects: 0,
  })
  private ws: WebSocket | null = null
  private filter = ''
  private retryMs = 250
  private timer = 0
  private lags: number[] = []
  private closedByUs = false
  private hello = false // the open connection got its hello

  constructor(private opts: StreamOptions) {}

  start(filter: string) {
    this.filter = filter
    this.open()
  }

  /** Change the filter without reconnecting (the server acknowledges it). */
  setFilter(filter: string) {
    this.filter = filter
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'filter', filter }))
    }
  }

  /** Start over with another filter: reconnect and replay the backlog (used
   * when the filter gets broader, so that the view fills up again). */
  restart(filter: string) {
    this.filter = filter
    this.state.lastId = ''
    this.state.reconnects = 0
    clearTimeout(this.timer)
    const old = this.ws
    this.ws = null
    old?.close(1000)
    this.open()
  }

  stop() {
    this.closedByUs = true
    clearTimeout(this.timer)
    this.ws?.close(1000)
  }

  private url(): string {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
    const q = new URLSearchParams()
    if (this.filter) q.set('filter', this.filter)
    if (this.state.lastId) q.set('since', this.state.lastId)
    else if (this.opts.backlog > 0) q.set('backlog', String(this.opts.backlog))
    return `${proto}//${location.host}/stream?${q}`
  }

  private open() {
    this.state.phase = this.state.reconnects ? 'reconnecting' : 'connecting'
    const key = apiKey()
    let ws: WebSocket
    try {
      ws = key ? new WebSocket(this.url(), ['agent-obs-stream', 'agent-obs.key.' + key]) : new WebSocket(this.url())
    } catch {
      // a key with characters a subprotocol cannot carry
      localStorage.removeItem(KEY_STORE)
      this.state.detail = 'the stored API key is malformed'
      this.timer = window.setTimeout(() => this.open(), this.retryMs)
      return
    }
    this.ws = ws
    this.hello = false
    ws.onmessage = (m) => this.onMessage(m.data as string)
    ws.onclose = (e) => {
      if (this.ws !== ws) return
      this.ws = null
      if (this.closedByUs) return
      const why = e.code === 4008 ? 'dropped: too slow (4008)' : e.reason || `closed (${e.code})`
      this.state.detail = why
      this.state.phase = 'reconnecting'
      this.state.reconnects++
      const retry = () => {
        this.timer = window.setTimeout(() => this.open(), this.retryMs)
        this.retryMs = Math.min(this.retryMs * 2, 5000)
      }
      if (this.hello) retry()
      else this.checkKey().then(retry)
    }
  }

  /** Refused before the hello: ask the streamer whether the key is the cause
   * (browsers hide a refused upgrade's status) and prompt for a key. */
  private async checkKey() {
    const key = apiKey()
    let status = 0
    try {
      const r = await fetch('/stream', { headers: key ? { Authorization: 'Bearer ' + key } : {} })
      status = r.status
    } catch {
      return
    }
    if (status !== 401 && status !== 403) return
    this.state.detail = status === 401 ? 'API key required' : 'this API key lacks the read role'
    const entered = window.prompt(
      status === 401
        ? 'The streamer needs an API key with the read role:'
        : 'This API key lacks the read role. Enter another:',
    )
    if (entered && entered.trim()) {
      localStorage.setItem(KEY_STORE, entered.trim())
      this.retryMs = 250
    }
  }

  private onMessage(text: string) {
    let data: ServerMsg | ServerMsg[]
    try {
      data = JSON.parse(text)
    } catch {
      return
    }
    const msgs = Array.isArray(data) ? data : [data]
    const events: EventMsg[] = []
    for (const m of msgs) {
      switch (m.type) {
        case 'event':
          if (!this.state.lastId || sidCmp(m.id, this.state.lastId) > 0) {
            events.push(m)
            this.state.lastId = m.id
          }
          break
        case 'hello':
          this.hello = true
          this.state.filter = m.filter
          this.state.phase = m.replay === 'none' ? 'live' : 'replaying'
          this.retryMs = 250
          // the filter may have changed while we were away
          if (m.filter !== this.filter) this.setFilter(this.filter)
          break
        case 'replay_done':
          this.flush(events, true)
          this.state.phase = 'live'
          this.state.detail = m.complete ? '' : m.note ?? 'replay incomplete'
          break
        case 'filter':
          this.state.filter = m.filter
          this.state.detail = ''
          break
        case 'error':
          this.state.detail = m.error.message
          break
      }
    }
    this.flush(events, this.state.phase === 'replaying')
  }

  private flush(events: EventMsg[], replay: boolean) {
    if (!events.length) return
    const batch = events.splice(0)
    this.state.received += batch.length
    if (!replay) {
      const now = Date.now()
      for (const e of batch) this.lags.push(Math.max(0, now - sidMs(e.id)))
      this.lags = this.lags.slice(-50)
      const s = [...this.lags].sort((a, b) => a - b)
      this.state.lagMs = s[Math.floor(s.length / 2)]
    }
    this.opts.onEvents(batch, replay)
  }
}
