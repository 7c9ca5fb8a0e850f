// marks.ts -- text with highlighted parts, rendered without v-html: a search
// snippet from the API (HTML-escaped text, matches in <mark>…</mark>) and a
// transcript message with the words of the search marked.

export interface Part {
  text: string
  mark: boolean
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', '#39': "'", '#x27': "'", apos: "'" }

function unescapeHtml(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|#39|#x27|apos);/g, (_, e: string) => ENTITIES[e])
}

/** "a <mark>b</mark> &amp; c" -> [a ][b*][ & c]; any other tag stays text. */
export function snippetParts(snippet: string): Part[] {
  const out: Part[] = []
  let mark = false
  for (const piece of snippet.split(/(<mark>|<\/mark>)/)) {
    if (piece === '<mark>') mark = true
    else if (piece === '</mark>') mark = false
    else if (piece) out.push({ text: unescapeHtml(piece), mark })
  }
  return out
}

/** The words of a search ("a phrase", -not and `or` dropped), lower-case. */
export function searchWords(q: string): string[] {
  return q
    .replace(/(^|\s)-\S+/g, ' ')
    .split(/[\s"]+/)
    .map((w) => w.toLowerCase().replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, ''))
    .filter((w) => w.length > 1 && w !== 'or')
}

/** Mark every occurrence of a word that starts one of `words` (so that
 * "capacitor" also marks "capacitors", as the English stemmer matched it). */
export function highlight(text: string, words: string[]): Part[] {
  if (!words.length || !text) return [{ text, mark: false }]
  const esc = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(?:${esc.join('|')})[\\p{L}\\p{N}]*`, 'giu')
  const out: Part[] = []
  let last = 0
  for (const m of text.matchAll(re)) {
    if (m.index! > last) out.push({ text: text.slice(last, m.index), mark: false })
    out.push({ text: m[0], mark: true })
    last = m.index! + m[0].length
  }
  if (last < text.length) out.push({ text: text.slice(last), mark: false })
  return out
}
