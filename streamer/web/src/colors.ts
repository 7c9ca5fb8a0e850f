// colors.ts -- stable colours from ids: the same session always gets the same
// colour, on every screen and after every reload (FNV-1a over the UTF-8
// bytes; hue and tone from the hash, lightness range from the theme).

export function hash32(s: string): number {
  let h = 0x811c9dc5
  for (const b of new TextEncoder().encode(s)) {
    h ^= b
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}

export function hue(id: string): number {
  return hash32(id) % 360
}

const LIGHT = [38, 47, 56]
const DARK = [58, 67, 76]

/** The colour of a session: hue = hash mod 360, and one of three tones (from
 * other bits of the hash) so that sessions with close hues still differ:
 * hsl(H, 70%, 38|47|56%) in light, hsl(H, 75%, 58|67|76%) in dark. */
export function sessionColor(id: string | undefined, dark: boolean): string {
  if (!id) return dark ? 'hsl(0, 0%, 62%)' : 'hsl(0, 0%, 45%)'
  const h = hash32(id)
  const tone = (h >>> 9) % 3
  return dark ? `hsl(${h % 360}, 75%, ${DARK[tone]}%)` : `hsl(${h % 360}, 70%, ${LIGHT[tone]}%)`
}
