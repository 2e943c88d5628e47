// Issue 19, items 2 and 10 on the Generate page:
// 10. at 1280×860 the Generate button is on screen, and after pressing it from the bottom of the page the status,
//     progress and Cancel are in view; a job cancelled while it waited says it was cancelled before it started;
//     on a phone, pressing Generate brings the stage into view;
//  2. an art-studio job in the history shows its own summary (no "(no prompt)", no steps or model), offers the
//     Art studio instead of "Reuse settings", and opening it leaves the prompt alone.

import { assert, byTestId, freshContext, makePng, registerViaUi, runE2E } from './lib.mjs'

/** In the window and not under anything (the sticky header): the element itself is what a click at its centre hits. */
const inView = (page, testId) => page.getByTestId(testId).first().evaluate((el) => {
  const box = el.getBoundingClientRect()
  if (!(box.top >= 0 && box.bottom <= window.innerHeight && box.height > 0)) return false
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2)
  return !!hit && (el === hit || el.contains(hit))
})

/** The stage scrolls smoothly, so "in view" is waited for (a few seconds at most), not sampled once. */
async function comesIntoView(page, testId) {
  for (let i = 0; i < 30; i++) {
    if (await inView(page, testId)) return true
    await page.waitForTimeout(100)
  }
  return false
}

async function choose(page, select, option, value) {
  await byTestId(page, select).click()
  const item = page.locator(`[data-testid="${option}"][data-value="${value}"], [data-testid="${option}"][data-model="${value}"]`)
  await item.click()
  await item.waitFor({ state: 'hidden' })
}

async function fillSmall(page, steps, side = 64) {
  await byTestId(page, 'gen-status').waitFor()
  await choose(page, 'gen-model', 'gen-model-option', 'demo-tiny')
  await choose(page, 'gen-width', 'gen-width-option', side)
  await choose(page, 'gen-height', 'gen-height-option', side)
  await byTestId(page, 'gen-steps').fill(String(steps))
  await byTestId(page, 'gen-prompt').fill('a lighthouse at dusk')
}

await runE2E('generate-kinds', async ({ browser, page, log }) => {
  await registerViaUi(page)
  log('10: the Generate button is on the first screen at 1280×860')
  await page.goto('/generate')
  // Large enough that the first job is still running when it is cancelled below, even on a slow machine (at 64 px
  // its 150 steps took 2 s here).
  await fillSmall(page, 150, 256)
  await page.evaluate(() => window.scrollTo(0, 0))
  assert.ok(await inView(page, 'gen-submit'), 'the button is in view without scrolling')

  log('10: pressed from the bottom of the page, the stage (status, progress, Cancel) stays in view')
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight))
  await byTestId(page, 'gen-submit').click()
  await page.locator('[data-testid="gen-status"][data-status="running"]').waitFor()
  await byTestId(page, 'gen-cancel').waitFor()
  assert.ok(await comesIntoView(page, 'gen-status'), 'the status is in view')
  assert.ok(await comesIntoView(page, 'gen-cancel'), 'Cancel is in view')
  assert.ok(await comesIntoView(page, 'gen-progress'), 'the progress is in view')

  log('10: a job cancelled while it waits was "cancelled before it started"')
  await byTestId(page, 'gen-submit').click()
  await page.locator('[data-testid="gen-status"][data-status="queued"]').waitFor()
  await byTestId(page, 'gen-cancel').click()
  await page.locator('[data-testid="gen-status"][data-status="cancelled"]').waitFor()
  assert.equal((await byTestId(page, 'gen-cancelled-text').innerText()).trim(), 'Cancelled before it started')
  const running = page.locator('[data-testid="gen-history-item"][data-status="running"]')
  await running.click()
  assert.ok(await comesIntoView(page, 'gen-cancel'), 'opening the running job from the bottom of the page shows its Cancel')
  await byTestId(page, 'gen-cancel').click()
  await page.locator('[data-testid="gen-status"][data-status="cancelled"]').waitFor()
  assert.match(await byTestId(page, 'gen-cancelled-text').innerText(), /Cancelled at step \d+ of 150/)

  log('2: an art job in the history: its own summary, no steps or model, the Art studio instead of Reuse settings')
  const xsrf = (await page.context().cookies()).find((c) => c.name === '_xsrf').value
  const made = await page.request.post('/api/art?preset=fast', {
    headers: { 'Content-Type': 'image/png', 'X-XSRFToken': xsrf }, data: makePng(96, 64),
  })
  assert.equal(made.status(), 202, await made.text())
  const artId = (await made.json()).job.id
  for (let i = 0; i < 200; i++) {
    const job = (await (await page.request.get(`/api/jobs/${artId}`)).json()).job
    if (job.status === 'done') break
    assert.ok(job.status === 'queued' || job.status === 'running', JSON.stringify(job))
    await page.waitForTimeout(100)
  }
  await page.reload()
  await byTestId(page, 'gen-prompt').fill('keep my words')
  const art = page.locator(`[data-testid="gen-history-item"][data-job-id="${artId}"]`)
  assert.equal(await art.getAttribute('data-kind'), 'art')
  assert.doesNotMatch(await art.getAttribute('aria-label'), /no prompt/)
  await art.click()
  await page.locator('[data-testid="gen-status"][data-status="done"]').waitFor()
  assert.match(await byTestId(page, 'gen-stage-title').innerText(), /Art studio/)
  for (const absent of ['gen-detail-steps', 'gen-detail-model', 'gen-reuse', 'gen-reuse-seed']) {
    assert.equal(await byTestId(page, absent).count(), 0, `${absent} is not offered for an art job`)
  }
  assert.doesNotMatch(await byTestId(page, 'gen-details').innerText(), /undefined|opencv/)
  await byTestId(page, 'gen-detail-style').waitFor()
  assert.equal(await byTestId(page, 'gen-prompt').inputValue(), 'keep my words', 'opening it left the prompt alone')
  await byTestId(page, 'gen-open-kind').click()
  await page.waitForURL('**/studio')

  log('10: on a phone, pressing Generate brings the stage into view')
  const phone = await freshContext(browser, { viewport: { width: 390, height: 844 } })
  await phone.addCookies(await page.context().cookies())
  const p = await phone.newPage()
  await p.goto('/generate')
  await fillSmall(p, 3)
  await byTestId(p, 'gen-submit').click()
  await byTestId(p, 'gen-status').waitFor()
  await p.waitForFunction(() => {
    const box = document.querySelector('[data-testid="gen-status"]').getBoundingClientRect()
    return box.top >= 0 && box.bottom <= window.innerHeight
  })
})
