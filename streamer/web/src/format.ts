// format.ts -- numbers and times as the history views show them.

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return ''
  const d = new Date(iso)
  return Number.isFinite(d.getTime()) ? d.toLocaleString() : iso
}

export function fmtClock(iso: string | null | undefined): string {
  if (!iso) return ''
  const d = new Date(iso)
  return Number.isFinite(d.getTime()) ? d.toLocaleTimeString() : iso
}

export function fmtDuration(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return ''
  if (s < 60) return `${Math.round(s)}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${Math.round(s % 60)}s`
  const h = Math.floor(m / 60)
  return h < 48 ? `${h}h ${m % 60}m` : `${Math.floor(h / 24)}d ${h % 24}h`
}

export function fmtNumber(n: number | null | undefined): string {
  return n === null || n === undefined ? '' : n.toLocaleString()
}

export function fmtCost(n: number | null | undefined): string {
  if (n === null || n === undefined) return ''
  if (n === 0) return '$0'
  return '$' + (n >= 1 ? n.toFixed(2) : n.toFixed(4))
}
