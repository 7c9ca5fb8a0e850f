// route.ts -- which view is on screen, kept in the URL's hash so that any
// view can be shared: '' or '#/' the live view (its filters stay in the
// query string, filter.ts), '#/history?q=…&agent=…' the history search,
// '#/session/<id>?m=<message id>&q=…' one past session.
import { shallowRef } from 'vue'

export type Route =
  | { name: 'live' }
  | { name: 'history'; query: URLSearchParams }
  | { name: 'session'; id: string; query: URLSearchParams }

export function parseHash(hash: string): Route {
  const h = hash.replace(/^#/, '')
  const qi = h.indexOf('?')
  const path = qi < 0 ? h : h.slice(0, qi)
  const query = new URLSearchParams(qi < 0 ? '' : h.slice(qi + 1))
  if (path === '/history') return { name: 'history', query }
  if (path.startsWith('/session/') && path.length > 9) {
    try {
      return { name: 'session', id: decodeURIComponent(path.slice(9)), query }
    } catch {
      return { name: 'history', query: new URLSearchParams() }
    }
  }
  return { name: 'live' }
}

function withQuery(path: string, q: Record<string, string | undefined>): string {
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(q)) if (v) p.set(k, v)
  const s = p.toString()
  return '#' + path + (s ? '?' + s : '')
}

export function historyHref(q: Record<string, string | undefined> = {}): string {
  return withQuery('/history', q)
}

export function sessionHref(id: string, q: Record<string, string | undefined> = {}): string {
  return withQuery('/session/' + encodeURIComponent(id), q)
}

/** The live view of one session: its filter chip in the query string. */
export function liveHref(session?: string): string {
  return location.pathname + (session ? '?session=' + encodeURIComponent(session) : '')
}

export const route = shallowRef<Route>(parseHash(location.hash))
/** The last history search shown, for a session's "back to the search". */
export let lastSearch = route.value.name === 'history' ? location.hash : historyHref()
window.addEventListener('hashchange', () => {
  route.value = parseHash(location.hash)
  if (route.value.name === 'history') lastSearch = location.hash
})

/** Go to a view (a new history entry, so Back returns). */
export function go(hash: string) {
  if (location.hash === hash) route.value = parseHash(hash)
  else location.hash = hash
}
