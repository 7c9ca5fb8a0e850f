// auth.mjs -- the dashboard against a streamer with API keys: Debian's
// Chromium (playwright-core) opens the SPA, is refused, gets a key prompt;
// an ingest key is refused again (403, a second prompt), the read key is
// stored in localStorage and the stream goes live; an event POSTed with the
// ingest key arrives; a reload reuses the stored key without prompting.
//
// Usage: STREAMER=http://127.0.0.1:7071 COLLECTOR=http://127.0.0.1:7070 \
//        READ_KEY=... INGEST_KEY=... node tests/browser/auth.mjs
// Prints one line per check; exits 1 on the first failure.
import { chromium } from 'playwright-core'

const STREAMER = process.env.STREAMER
const COLLECTOR = process.env.COLLECTOR
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'
const READ_KEY = process.env.READ_KEY
const INGEST_KEY = process.env.INGEST_KEY

let step = 0
const ok = (what) => console.log(`  check ${++step}: ${what}`)
const fail = (what) => {
  throw new Error(what)
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  })
  const page = await (await browser.newContext()).newPage()
  const prompts = []
  page.on('dialog', async (d) => {
    prompts.push(d.message())
    // first the wrong role, then the right key
    await d.accept(prompts.length === 1 ? INGEST_KEY : READ_KEY)
  })
  try {
    await page.goto(STREAMER + '/', { waitUntil: 'domcontentloaded' })
    await page.waitForSelector('[data-testid=status].live', { timeout: 15000 })
    if (prompts.length !== 2) fail(`expected 2 prompts, got ${JSON.stringify(prompts)}`)
    if (!/API key/.test(prompts[0]) || !/lacks the read role/.test(prompts[1]))
      fail(`unexpected prompts ${JSON.stringify(prompts)}`)
    ok('refused without a key: prompt; an ingest key: second prompt (403); the read key: live')
    const stored = await page.evaluate(() => localStorage.getItem('agent-obs.key'))
    if (stored !== READ_KEY) fail('the read key is not in localStorage')
    ok('the key is kept in localStorage')
    if (page.url().includes(READ_KEY)) fail('the key is in the URL')

    const r = await fetch(COLLECTOR + '/events', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + INGEST_KEY },
      body: JSON.stringify({ session_id: 'browser-auth', agent_id: 'a1', event_type: 'Stop' }),
    })
    if (r.status !== 202) fail(`collector answered ${r.status}`)
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=received]')?.textContent?.replace(/\D/g, '')) >= 1,
      null, { timeout: 10000 })
    ok('an event posted with the ingest key arrives')

    await page.reload({ waitUntil: 'domcontentloaded' })
    await page.waitForSelector('[data-testid=status].live', { timeout: 10000 })
    if (prompts.length !== 2) fail('prompted again after a reload')
    ok('a reload connects with the stored key, no prompt')
  } finally {
    await browser.close()
  }
}

main().catch((e) => {
  console.error('FAIL: ' + e.message)
  process.exit(1)
})
