// dashboard.mjs -- drives Debian's Chromium with playwright-core against a
// running stack: opens the dashboard the streamer serves, posts events to the
// collector, and checks what a person would see: events appear in the
// timeline with their session's stable colour, sub-agents nest under their
// parent, errors stand out with their stack trace, filter chips narrow the
// view and live in the URL, the drawer shows the full JSON, light and dark
// both render. Then the history view: the events and a Stop-hook transcript
// are stored by the processor, a transcript search finds the session, and the
// session opens as the same timeline (same lanes, same colours) with its
// transcript alongside, every page of events and messages loaded, read from
// the collector's API across origins. Saves screenshots under tests/artifacts/.
//
// Usage: STREAMER=http://127.0.0.1:7071 COLLECTOR=http://127.0.0.1:7070 \
//        node tests/browser/dashboard.mjs
// Prints one line per check; exits 1 on the first failure.
import { chromium } from 'playwright-core'
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomUUID } from 'node:crypto'

const HERE = dirname(fileURLToPath(import.meta.url))
const ART = join(HERE, '..', 'artifacts')
const STREAMER = process.env.STREAMER ?? 'http://127.0.0.1:7071'
const COLLECTOR = process.env.COLLECTOR ?? 'http://127.0.0.1:7070'
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

// the dashboard's colour rule (streamer/web/src/colors.ts), restated here so
// that a change there is a visible, deliberate change of this test
function hash32(s) {
  let h = 0x811c9dc5
  for (const b of new TextEncoder().encode(s)) {
    h ^= b
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h >>> 0
}
function colour(s, dark) {
  const h = hash32(s)
  const tone = (h >>> 9) % 3
  return dark ? `hsl(${h % 360}, 75%, ${[58, 67, 76][tone]}%)` : `hsl(${h % 360}, 70%, ${[38, 47, 56][tone]}%)`
}

let step = 0
function ok(what) {
  console.log(`  check ${++step}: ${what}`)
}
function fail(what) {
  throw new Error(what)
}

async function post(events) {
  const r = await fetch(COLLECTOR + '/events', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(events),
  })
  if (r.status !== 202) fail(`collector answered ${r.status}: ${await r.text()}`)
  return (await r.json()).ids
}

// A small, realistic fleet: two sessions with a main agent and sub-agents,
// tool calls with latencies and tokens, spread over the last few minutes.
const run = randomUUID().slice(0, 4)
const S1 = `refactor-${run}`
const S2 = `tests-${run}`
const S3 = `docs-${run}`
function fleet(now) {
  const ev = []
  const tools = ['Read', 'Edit', 'Bash', 'Grep', 'Write', 'mcp__github__get_issue']
  const lat = { Read: 8, Edit: 22, Bash: 900, Grep: 35, Write: 15, mcp__github__get_issue: 420 }
  const agents = [
    { s: S1, a: `${S1}-main`, role: 'main' },
    { s: S1, a: `${S1}-explore`, role: 'subagent', p: `${S1}-main` },
    { s: S1, a: `${S1}-review`, role: 'subagent', p: `${S1}-main` },
    { s: S2, a: `${S2}-main`, role: 'main' },
    { s: S2, a: `${S2}-runner`, role: 'subagent', p: `${S2}-main` },
    { s: S3, a: `${S3}-main`, role: 'main' },
  ]
  let k = 0
  for (let i = 0; i < 90; i++) {
    const g = agents[(i * 5 + (i >> 2)) % agents.length]
    const tool = tools[(i * 5 + (k++ >> 3)) % tools.length]
    const t = now - 240e3 + i * 2600 + (i % 3) * 400
    const base = { session_id: g.s, agent_id: g.a, agent_role: g.role, source_app: 'claude-code' }
    if (g.p) base.parent_agent_id = g.p
    ev.push({ ...base, event_type: 'PreToolUse', tool, timestamp: t, payload: { i } })
    ev.push({
      ...base,
      event_type: 'PostToolUse',
      tool,
      timestamp: t + lat[tool] * (0.5 + (i % 5) / 3),
      latency_ms: Math.round(lat[tool] * (0.5 + (i % 5) / 3)),
      tokens: { input: 200 + ((i * 137) % 1800), output: 40 + ((i * 61) % 500) },
      payload: { i },
    })
  }
  for (const g of agents.filter((x) => x.role === 'subagent')) {
    ev.push({ session_id: g.s, agent_id: g.a, agent_role: g.role, parent_agent_id: g.p,
      event_type: 'SubagentStop', timestamp: now - 20e3 })
  }
  ev.push({ session_id: S2, agent_id: `${S2}-runner`, agent_role: 'subagent', parent_agent_id: `${S2}-main`,
    event_type: 'PostToolUseFailure', tool: 'Bash', latency_ms: 5230, timestamp: now - 95e3,
    payload: { command: 'npm test', error: { message: 'Test suite failed: 3 of 212 tests failed',
      stack: 'Error: expect(received).toBe(expected)\n    at Object.<anonymous> (src/parser.test.ts:41:23)\n    at processTicksAndRejections (node:internal/process/task_queues:95:5)' } } })
  ev.push({ session_id: S1, agent_id: `${S1}-main`, agent_role: 'main', event_type: 'PostToolUse', tool: 'Edit',
    latency_ms: 31, timestamp: now - 40e3, payload: { success: false, error: 'old_string not found in file' } })
  ev.push({ session_id: S3, agent_id: `${S3}-main`, agent_role: 'main', event_type: 'Notification', timestamp: now - 10e3,
    payload: { message: 'Claude needs your permission to use Bash' } })
  return ev
}

async function get(path) {
  const r = await fetch(COLLECTOR + path)
  if (r.status !== 200) fail(`GET ${path}: ${r.status} ${await r.text()}`)
  return r.json()
}

// POST /transcripts in the format the Stop hook sends (README "Transcripts")
async function postTranscript(session, messages) {
  const r = await fetch(COLLECTOR + '/transcripts', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ session_id: session, agent_id: null, transcript_path: `/home/dev/.claude/projects/p/${session}.jsonl`, messages }),
  })
  if (r.status !== 202) fail(`POST /transcripts answered ${r.status}: ${await r.text()}`)
}

async function until(what, fn, ms = 20000) {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) fail('timed out waiting for ' + what)
    await new Promise((r) => setTimeout(r, 200))
  }
}

async function circles(page, session) {
  return page.$$eval(`svg[data-testid=timeline] circle[data-session="${session}"]`, (cs) =>
    cs.map((c) => ({ fill: c.getAttribute('fill'), sid: c.getAttribute('data-sid'), err: c.classList.contains('err') })))
}

let s1Posted = 0

// The history view, after the live checks: past sessions from PostgreSQL
// through the collector's read API, across origins.
async function history(page, context) {
  const L = `long-${run}` // more events and messages than one page holds
  const now = Date.now()
  const long = []
  for (let i = 0; i < 2500; i++) {
    const sub = i % 3 !== 0
    long.push({ session_id: L, agent_id: sub ? `${L}-worker` : `${L}-main`, agent_role: sub ? 'subagent' : 'main',
      ...(sub ? { parent_agent_id: `${L}-main` } : {}),
      event_type: i % 100 === 99 ? 'PostToolUseFailure' : i % 2 ? 'PostToolUse' : 'PreToolUse',
      tool: ['Bash', 'Read', 'Edit'][i % 3], timestamp: now - 3 * 3600e3 + i * 4000, payload: { i } })
  }
  await post(long)
  const t0 = now - 120e3
  const phrase = `tachyon manifold ${run}`
  await postTranscript(S1, [
    { uuid: randomUUID(), role: 'user', text: `Why does the ${phrase} drift after the refactor?`, timestamp: new Date(t0).toISOString() },
    { uuid: randomUUID(), role: 'assistant', model: 'claude-sonnet-4-5', tokens: { input: 1200, output: 300 },
      text: `The ${phrase} drifts because parser.ts re-reads the config on every call.\nCaching it fixes the drift.`,
      timestamp: new Date(t0 + 5000).toISOString() },
    { uuid: randomUUID(), role: 'user', text: 'Fix it and run the tests.', timestamp: new Date(t0 + 9000).toISOString() },
  ])
  const msgs = []
  for (let i = 0; i < 600; i++)
    msgs.push({ uuid: randomUUID(), role: i % 2 ? 'assistant' : 'user', text: `long session message ${i}`,
      timestamp: new Date(now - 3 * 3600e3 + i * 15000).toISOString() })
  await postTranscript(L, msgs)
  await until('the processor to store the events and transcripts', async () => {
    const s1 = await get(`/sessions/${encodeURIComponent(S1)}`)
    const l = await fetch(`${COLLECTOR}/sessions/${encodeURIComponent(L)}`).then((r) => (r.ok ? r.json() : null))
    return s1.session.events === s1Posted && s1.session.transcript_messages === 3 &&
      l?.session.events === 2500 && l?.session.transcript_messages === 600
  })
  ok(`the processor stored ${s1Posted} + 2500 events and 3 + 600 transcript messages`)

  await page.setViewportSize({ width: 1600, height: 1000 })
  await page.click('[data-testid=nav-history]')
  await page.waitForSelector('[data-testid=history-form]', { timeout: 5000 })
  if (await page.evaluate(() => document.documentElement.dataset.theme === 'dark')) await page.click('[data-testid=theme]')
  for (const s of [S1, S2, L]) await page.waitForSelector(`[data-testid=sessions] tr[data-session="${s}"]`, { timeout: 10000 })
  ok('History opens the history view; GET /sessions answers across origins (CORS) and lists the sessions')

  await page.fill('[data-testid=history-q]', `"${phrase}"`)
  await page.click('[data-testid=history-submit]')
  await page.waitForSelector(`[data-testid=hits] .hit[data-session="${S1}"]`, { timeout: 10000 })
  const hits = await page.$$eval('[data-testid=hits] .hit', (hs) => hs.map((h) => ({
    session: h.getAttribute('data-session'), marks: [...h.querySelectorAll('mark')].map((m) => m.textContent), text: h.textContent })))
  if (hits.length !== 2 || hits.some((h) => h.session !== S1)) fail('expected 2 hits in ' + S1 + ': ' + JSON.stringify(hits))
  if (!hits.every((h) => h.marks.includes('tachyon') && h.marks.includes('manifold'))) fail('hits lack the marked words: ' + JSON.stringify(hits))
  const hash = await page.evaluate(() => location.hash)
  if (!hash.startsWith('#/history?') || !new URLSearchParams(hash.split('?')[1]).get('q').includes(phrase)) fail('search not in the URL: ' + hash)
  await page.screenshot({ path: join(ART, 'dashboard-history-search.png') })
  ok(`transcript search finds the phrase from the Stop hook (2 hits, marked), kept in the URL (${hash}); screenshot dashboard-history-search.png`)

  await page.click(`[data-testid=hits] .hit[data-session="${S1}"] a`)
  await page.waitForFunction(() => location.hash.startsWith('#/session/'), null, { timeout: 5000 })
  await until('the session timeline', async () => (await circles(page, S1)).length === s1Posted, 10000)
  const dots = await circles(page, S1)
  const want = colour(S1, false)
  if (dots.some((c) => c.fill !== want)) fail(`history dots not ${want}: ${dots.find((c) => c.fill !== want).fill}`)
  if (dots.filter((c) => c.err).length !== 1) fail('the failed Edit of ' + S1 + ' is not ringed')
  const hl = await page.$$eval('.lane-label', (ls) => ls.map((l) => ({ name: l.querySelector('.lane-name')?.textContent, nested: l.classList.contains('nested') })))
  const at = (n) => hl.findIndex((l) => l.name === n)
  for (const child of [`${S1}-explore`, `${S1}-review`]) {
    if (at(child) < 0 || !hl[at(child)].nested || at(child) < at(`${S1}-main`) || hl[at(`${S1}-main`)].nested) fail(`lane ${child} not nested: ${JSON.stringify(hl)}`)
  }
  ok(`the past session opens as the live timeline: all ${s1Posted} events, colour ${want}, sub-agents nested, the error ringed`)

  await page.waitForSelector('[data-testid=transcript] .message.focus', { timeout: 5000 })
  const tr = await page.textContent('[data-testid=transcript]')
  for (const t of [`Why does the ${phrase} drift`, 'Caching it fixes the drift.', 'Fix it and run the tests.']) if (!tr.includes(t)) fail('transcript lacks: ' + t)
  const focus = await page.textContent('[data-testid=transcript] .message.focus')
  if (!focus.includes(phrase)) fail('the message of the hit is not the focused one: ' + focus)
  const marks = await page.$$eval('[data-testid=transcript] mark', (ms) => ms.map((m) => m.textContent))
  if (!marks.includes('tachyon')) fail('search words not marked in the transcript')
  const summary = await page.textContent('[data-testid=session-summary]')
  if (!summary.includes(String(s1Posted))) fail('summary lacks the event count: ' + summary)
  await page.screenshot({ path: join(ART, 'dashboard-history-session.png') })
  ok('its transcript is alongside, the hit\'s message focused, the search words marked; screenshot dashboard-history-session.png')

  await page.click(`svg[data-testid=timeline] circle.err`, { force: true })
  await page.waitForSelector('[data-testid=drawer].open', { timeout: 5000 })
  const ej = JSON.parse(await page.textContent('[data-testid=event-json]'))
  if (ej.session_id !== S1 || ej.payload?.error !== 'old_string not found in file') fail('drawer shows the wrong event: ' + JSON.stringify(ej))
  await page.keyboard.press('Escape')
  ok('a dot of the past session opens the drawer with the stored event')

  // a shared session URL, in a new tab: every page of events and messages
  const p2 = await context.newPage()
  await p2.goto(`${STREAMER}/#/session/${encodeURIComponent(L)}`)
  await until('all 2500 events of the long session', async () => (await circles(p2, L)).length === 2500, 20000)
  await until('all 600 messages', async () => (await p2.$$('[data-testid=transcript] .message')).length === 600, 20000)
  const order = await p2.$$eval('[data-testid=transcript] .message-text', (ms) => ms.map((m) => m.textContent))
  if (order[0] !== 'long session message 0' || order[599] !== 'long session message 599') fail('messages out of order')
  const ids = await p2.$$eval(`svg[data-testid=timeline] circle`, (cs) => cs.map((c) => c.getAttribute('data-id')))
  if (new Set(ids).size !== 2500) fail('repeated events across pages')
  const lanesL = await p2.$$eval('.lane-label', (ls) => ls.map((l) => l.classList.contains('nested')))
  if (lanesL.length !== 2 || lanesL[0] || !lanesL[1]) fail('long session lanes: ' + JSON.stringify(lanesL))
  await p2.close()
  ok('a shared #/session/ URL loads every page: 2500 events (3 pages, none repeated) and 600 messages (2 pages, in order)')

  await page.click('[data-testid=nav-back]')
  await page.waitForSelector(`[data-testid=hits] .hit[data-session="${S1}"]`, { timeout: 5000 })
  if ((await page.inputValue('[data-testid=history-q]')) !== `"${phrase}"`) fail('search not restored')
  await page.click('[data-testid=nav-live]')
  await page.waitForSelector('[data-testid=status].live', { timeout: 10000 })
  ok('back to the search (restored), then back to the live view (connected)')
}

async function main() {
  mkdirSync(ART, { recursive: true })
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  })
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 }, colorScheme: 'light' })
  const page = await context.newPage()
  const problems = []
  page.on('pageerror', (e) => problems.push('page error: ' + e.message))
  page.on('console', (m) => m.type() === 'error' && problems.push('console: ' + m.text()))
  try {
    await page.goto(STREAMER + '/?window=5m', { waitUntil: 'domcontentloaded' })
    await page.waitForSelector('[data-testid=status].live', { timeout: 10000 })
    ok('dashboard loads from the streamer and connects (status live)')

    const posted = fleet(Date.now())
    s1Posted = posted.filter((e) => e.session_id === S1).length + 1 // + the Stop posted below
    const ids = await post(posted)
    const last = ids[ids.length - 1]
    await page.waitForFunction((n) => Number(document.querySelector('[data-testid=received]')?.textContent?.replace(/\D/g, '')) >= n,
      ids.length, { timeout: 10000 })
    await page.waitForTimeout(400) // one commit tick
    ok(`${ids.length} posted events arrive over the WebSocket`)

    // colours: every dot of a session has that session's colour; sessions differ
    const seen = {}
    for (const s of [S1, S2, S3]) {
      const cs = await circles(page, s)
      if (!cs.length) fail(`no dots for session ${s}`)
      const want = colour(s, false)
      const wrong = cs.filter((c) => c.fill !== want)
      if (wrong.length) fail(`session ${s}: ${wrong.length} dots not ${want}: ${wrong[0].fill}`)
      seen[s] = want
      const legend = await page.$eval(`[data-testid=legend] [data-session="${s}"] .swatch`, (e) => getComputedStyle(e).backgroundColor)
      if (!legend || legend === 'rgba(0, 0, 0, 0)') fail(`legend swatch for ${s} missing`)
    }
    if (new Set(Object.values(seen)).size !== 3) fail(`session colours not distinct: ${JSON.stringify(seen)}`)
    ok(`dots carry stable per-session colours (${Object.values(seen).join(', ')})`)

    // swim lanes: sub-agents nested under their parent
    const lanes = await page.$$eval('.lane-label', (ls) => ls.map((l) => ({ name: l.querySelector('.lane-name')?.textContent, nested: l.classList.contains('nested') })))
    const idx = (n) => lanes.findIndex((l) => l.name === n)
    for (const [child, parent] of [[`${S1}-explore`, `${S1}-main`], [`${S2}-runner`, `${S2}-main`]]) {
      const c = idx(child), p = idx(parent)
      if (c < 0 || p < 0 || !lanes[c].nested || lanes[p].nested || c < p) fail(`lane ${child} not nested under ${parent}: ${JSON.stringify(lanes)}`)
    }
    ok(`${lanes.length} swim lanes, sub-agents nested under their parents`)

    // errors stand out: ringed dots and the errors panel with the stack trace
    const errDots = await page.$$eval('svg[data-testid=timeline] circle.err', (cs) => cs.length)
    if (errDots < 2) fail(`expected 2 error dots, saw ${errDots}`)
    const panel = await page.textContent('[data-testid=errors]')
    if (!panel.includes('Test suite failed') || !panel.includes('src/parser.test.ts:41:23')) fail('errors panel lacks the failure and its stack: ' + panel)
    ok('errors are ringed in the timeline and listed with message and stack trace')

    await page.screenshot({ path: join(ART, 'dashboard.png'), fullPage: false })
    ok('screenshot tests/artifacts/dashboard.png')

    // details drawer with the full JSON
    await page.click(`svg[data-testid=timeline] circle[data-id="${last}"]`, { force: true }).catch(async () => {
      await page.click('[data-testid=events] tbody tr')
    })
    await page.waitForSelector('[data-testid=drawer].open', { timeout: 5000 })
    const json = await page.textContent('[data-testid=event-json]')
    JSON.parse(json)
    if (!json.includes('"event_type"')) fail('drawer JSON incomplete')
    ok('clicking an event opens the drawer with its full JSON')
    await page.screenshot({ path: join(ART, 'dashboard-drawer.png') })
    await page.keyboard.press('Escape')

    // filter chip: only session S2; the URL carries it; S1 events stop arriving
    await page.selectOption('[data-testid=filter-key]', 'session')
    await page.fill('[data-testid=filter-value]', S2)
    await page.click('[data-testid=filter-add]')
    await page.waitForFunction((s) => location.search.includes('session=' + encodeURIComponent(s)), S2, { timeout: 5000 })
    await page.waitForTimeout(300)
    if ((await circles(page, S1)).length) fail('S1 dots still shown after filtering on S2')
    const before2 = (await circles(page, S2)).length
    const more = await post([
      { session_id: S1, agent_id: `${S1}-main`, event_type: 'Stop' },
      { session_id: S2, agent_id: `${S2}-main`, event_type: 'Stop' },
    ])
    await page.waitForSelector(`circle[data-id="${more[1]}"]`, { timeout: 5000, state: 'attached' })
    await page.waitForTimeout(300)
    if (await page.$(`circle[data-id="${more[0]}"]`)) fail('an S1 event arrived through an S2 filter')
    if ((await circles(page, S2)).length !== before2 + 1) fail('S2 did not gain exactly one dot')
    ok(`filter chip session:${S2} narrows the view, is in the URL (${await page.evaluate(() => location.search)}) and on the server`)

    // a shared URL restores the same view
    const shared = await page.evaluate(() => location.href)
    const page2 = await context.newPage()
    await page2.goto(shared)
    await page2.waitForSelector('[data-testid=status].live', { timeout: 10000 })
    const chips = await page2.textContent('[data-testid=chips]')
    if (!chips.includes(S2)) fail('chip not restored from the URL: ' + chips)
    await page2.close()
    ok('the URL restores the filter chips in a new tab')

    // pause holds new events, resume shows them
    await page.click('[data-testid=pause]')
    const held = await post([{ session_id: S2, agent_id: `${S2}-main`, event_type: 'Notification' }])
    await page.waitForFunction(() => /new/.test(document.querySelector('[data-testid=pause]')?.textContent ?? ''), null, { timeout: 5000 })
    if (await page.$(`circle[data-id="${held[0]}"]`)) fail('event shown while paused')
    await page.click('[data-testid=pause]')
    await page.waitForSelector(`circle[data-id="${held[0]}"]`, { timeout: 5000, state: 'attached' })
    ok('pause holds new events; resume shows them')

    // dark theme: same hue, dark lightness; a second screenshot for the wall
    // removing the chip widens the view again: history comes back (backlog)
    await page.click('[data-testid=chips] .chip-x')
    await page.waitForFunction(() => !location.search.includes('session='), null, { timeout: 5000 })
    await page.waitForSelector(`svg[data-testid=timeline] circle[data-session="${S1}"]`, { timeout: 5000, state: 'attached' })
    ok('removing the chip reconnects with backlog= and refills the view')
    await page.click('[data-testid=theme]')
    await page.waitForTimeout(300)
    const darkFill = (await circles(page, S2))[0]?.fill
    if (darkFill !== colour(S2, true)) fail(`dark colour for ${S2}: ${darkFill} != ${colour(S2, true)}`)
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor)
    if (bg !== 'rgb(13, 17, 23)') fail('dark background not applied: ' + bg)
    await page.setViewportSize({ width: 2560, height: 1440 })
    await page.evaluate(() => document.documentElement.classList.add('wall'))
    await page.waitForTimeout(300)
    await page.screenshot({ path: join(ART, 'dashboard-dark-wall.png') })
    ok('dark theme keeps the hues; screenshot tests/artifacts/dashboard-dark-wall.png')

    const lag = await page.textContent('[data-testid=lag]')
    ok(`status bar shows lag ${lag.trim()}`)

    await history(page, context)

    if (problems.length) fail(problems.join('\n'))
    ok('no page errors')
  } catch (e) {
    await page.screenshot({ path: join(ART, 'dashboard-failure.png') }).catch(() => {})
    console.log('  check failed: ' + e.message)
    if (problems.length) console.log(problems.join('\n'))
    await browser.close()
    process.exit(1)
  }
  await browser.close()
}

main()
