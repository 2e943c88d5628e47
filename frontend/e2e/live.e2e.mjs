// Live: a public render shows up as a tile whose picture changes as it forms (owner, model, prompt), the
// count of those waiting; opening it shows it full size with a Follow for its author. Generate's
// "Let others watch" switch is off by default. The renders are started by their author's script (a bearer
// token), while the page is open.
// Env: VA_OWNER (username), VA_TOKEN (the owner's API token).

import { assert, byTestId, registerViaUi, runE2E } from './lib.mjs'

const OWNER = process.env.VA_OWNER
const api = (method, path, body) => fetch(`${process.env.VA_BASE_URL}${path}`, {
  method,
  headers: { Authorization: `Bearer ${process.env.VA_TOKEN}`, 'Content-Type': 'application/json' },
  body: body ? JSON.stringify(body) : undefined,
}).then(async (r) => ({ status: r.status, body: await r.json().catch(() => null) }))

await runE2E('live', async ({ page, log }) => {
  await registerViaUi(page)
  log('Generate: "Let others watch" is off by default')
  await page.goto('/generate')
  await byTestId(page, 'gen-public').waitFor()
  assert.equal(await byTestId(page, 'gen-public').evaluate((el) => el.classList.contains('is-checked')), false)

  log('Live from the header; a public render starts meanwhile, one more waits')
  await byTestId(page, 'nav-live').click()
  await page.waitForURL('**/live')
  await byTestId(page, 'live-empty').waitFor()
  const prompt = `a lighthouse in a storm ${Date.now()}`
  const jobs = []
  for (let i = 0; i < 2; i++) {
    const made = await api('POST', '/api/jobs', { model: 'demo-tiny', prompt, width: 192, height: 192, steps: 150, public: true })
    assert.equal(made.status, 202, JSON.stringify(made.body))
    jobs.push(made.body.job.id)
  }
  // 192² × 150 steps: long enough that the tile's frame changes (once a second) before the job ends on a busy machine
  const tile = page.locator(`[data-testid="live-tile"][data-job-id="${jobs[0]}"]`)
  await tile.waitFor()
  await page.locator(`[data-testid="live-tile"][data-job-id="${jobs[0]}"][data-has-frame="true"]`).waitFor()
  assert.equal(await tile.locator('[data-testid="live-tile-prompt"]').innerText(), prompt)
  assert.match(await tile.innerText(), new RegExp(OWNER))
  assert.match(await tile.innerText(), /demo-tiny/)
  await page.locator('[data-testid="live-queued"][data-count="1"]').waitFor()
  const first = await tile.locator('[data-testid="live-tile-frame"]').getAttribute('src')
  await page.waitForFunction(([job, src]) => {
    const img = document.querySelector(`[data-testid="live-tile"][data-job-id="${job}"] [data-testid="live-tile-frame"]`)
    return img && img.getAttribute('src') !== src
  }, [jobs[0], first])

  log('open it full size and follow its author')
  await tile.click()
  await byTestId(page, 'live-watch-frame').waitFor()
  const follow = byTestId(page, 'live-watch').locator('[data-testid="follow-button"]')
  await follow.click()
  await follow.filter({ hasText: /Following|Unfollow/ }).waitFor()
  for (const job of jobs) await api('DELETE', `/api/jobs/${job}`)
})
