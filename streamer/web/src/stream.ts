// stream.ts -- the WebSocket to the streamer: connect with the current filter
// (and backlog= the first time, since=<last stream id> after a drop, so the
// view has no gap), change the filter on the open socket, reconnect with
// backoff, and report status and lag.

import { reactive } from 'vue'
import type { EventMsg, ServerMsg } from './types'
import { sidCmp, sidMs } from './types'

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
    const ws = new WebSocket(this.url())
    this.ws = ws
    ws.onmessage = (m) => this.onMessage(m.data as string)
    ws.onclose = (e) => {
      if (this.ws !== ws) return
      this.ws = null
      if (this.closedByUs) return
      const why = e.code === 4008 ? 'dropped: too slow (4008)' : e.reason || `closed (${e.code})`
      this.state.detail = why
      this.state.phase = 'reconnecting'
      this.state.reconnects++
      this.timer = window.setTimeout(() => this.open(), this.retryMs)
      this.retryMs = Math.min(this.retryMs * 2, 5000)
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
