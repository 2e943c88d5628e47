// Not a test: the Generate page mid-generation, waiting in the queue and finished, in light/dark and
// English/Chinese, and on a phone, for a visual check. The server needs a model (`run.py demo-model`).
//   VA_BASE_URL=http://127.0.0.1:8888 VA_E2E_ARTIFACTS=/tmp/shots node e2e/generate-screenshots.mjs

import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { byTestId, freshContext, launch, registerViaUi } from './lib.mjs'

const out = process.env.VA_E2E_ARTIFACTS || 'screenshots'
mkdirSync(out, { recursive: true })
const JOB_TIMEOUT_MS = 120_000

async function choose(page, select, option, value) {
  await byTestId(page, select).click()
  const item = page.locator(`[data-testid="${option}"][data-value="${value}"]`)
  await item.click()
  await item.waitFor({ state: 'hidden' })
}

async function settings(page, { prompt, negative = '', side, steps, batch = 1 }) {
  await byTestId(page, 'gen-prompt').fill(prompt)
  await byTestId(page, 'gen-negative').fill(negative)
  await choose(page, 'gen-width', 'gen-width-option', side)
  await choose(page, 'gen-height', 'gen-height-option', side)
  await byTestId(page, 'gen-steps').fill(String(steps))
  await byTestId(page, 'gen-batch').locator('input').fill(String(batch))
  await byTestId(page, 'gen-batch').locator('input').blur()
}

/** The whole page, from the top (the header is sticky: a scrolled page would show it halfway down). */
async function shoot(page, { path }) {
  await page.evaluate(() => window.scrollTo(0, 0))
  await page.screenshot({ path, fullPage: true })
}

const browser = await launch()
try {
  const setup = await freshContext(browser)
  const page = await setup.newPage()
  await registerViaUi(page)
  await page.goto('/generate')
  await byTestId(page, 'gen-model').waitFor()
  await page.waitForTimeout(300)
  await shoot(page, { path: join(out, 'generate-empty.png') })

  // Two finished jobs (one a batch of two) and a cancelled one for the history strip.
  await settings(page, { prompt: 'a quiet harbour at dawn, mist, soft pastel colours', side: 96, steps: 12 })
  await byTestId(page, 'gen-submit').click()
  await page.locator('[data-testid="gen-status"][data-status="done"]').waitFor({ timeout: JOB_TIMEOUT_MS })
  await settings(page, {
    prompt: 'a violet nebula over a quiet lake, long exposure, highly detailed, 35mm photograph',
    negative: 'blurry, watermark, text', side: 128, steps: 16, batch: 2,
  })
  await byTestId(page, 'gen-dice').click()
  await byTestId(page, 'gen-submit').click()
  await page.locator('[data-testid="gen-status"][data-status="done"]').waitFor({ timeout: JOB_TIMEOUT_MS })
  const doneJob = await page.locator('[data-testid="gen-history-item"][aria-current="true"]').getAttribute('data-job-id')
  await settings(page, { prompt: 'a red fox in fresh snow', side: 96, steps: 150 })
  await byTestId(page, 'gen-submit').click()
  await page.locator('[data-testid="gen-progress"]:not([data-step="0"])').waitFor({ timeout: JOB_TIMEOUT_MS })
  await byTestId(page, 'gen-cancel').click()
  await page.locator('[data-testid="gen-status"][data-status="cancelled"]').waitFor({ timeout: JOB_TIMEOUT_MS })
  await page.waitForTimeout(500)
  await shoot(page, { path: join(out, 'generate-cancelled.png') })

  // The one that runs while every variant looks at it (a reload picks it up again), and one behind it.
  await settings(page, {
    prompt: 'an old lighthouse on a cliff at dusk, oil painting, warm light, crashing waves',
    negative: 'lowres, jpeg artifacts', side: 512, steps: 150,
  })
  await byTestId(page, 'gen-submit').click()
  await page.locator('[data-testid="gen-status"][data-status="running"]').waitFor({ timeout: JOB_TIMEOUT_MS })
  await byTestId(page, 'gen-prompt').fill('a second lighthouse, waiting for its turn')
  await byTestId(page, 'gen-submit').click()
  await page.locator('[data-testid="gen-status"][data-status="queued"]').waitFor()
  await page.waitForTimeout(300)
  await shoot(page, { path: join(out, 'generate-queued.png') })
  await byTestId(page, 'gen-cancel').click()
  await page.locator('[data-testid="gen-status"][data-status="cancelled"]').waitFor()
  const state = await setup.storageState()

  const variants = [
    { name: 'en-light', locale: 'en-US', colorScheme: 'light' },
    { name: 'en-dark', locale: 'en-US', colorScheme: 'dark' },
    { name: 'zh-light', locale: 'zh-CN', colorScheme: 'light' },
    { name: 'zh-dark', locale: 'zh-CN', colorScheme: 'dark' },
  ]
  for (const variant of variants) {
    const context = await browser.newContext({
      baseURL: process.env.VA_BASE_URL, locale: variant.locale, colorScheme: variant.colorScheme,
      viewport: { width: 1280, height: 900 }, storageState: state,
    })
    const member = await context.newPage()
    await member.goto('/generate')
    const running = await member.locator('[data-testid="gen-status"][data-status="running"]').isVisible()
      || await member.locator('[data-testid="gen-status"][data-status="running"]').waitFor({ timeout: 8_000 }).then(() => true, () => false)
    if (running) {
      await byTestId(member, 'gen-preview').waitFor({ timeout: JOB_TIMEOUT_MS }).catch(() => {})
      await shoot(member, { path: join(out, `generate-running-${variant.name}.png`) })
    }
    await member.locator(`[data-testid="gen-history-item"][data-job-id="${doneJob}"]`).click()
    await byTestId(member, 'gen-result-image').waitFor()
    await member.waitForTimeout(600)
    await shoot(member, { path: join(out, `generate-done-${variant.name}.png`) })
    await context.close()
  }

  const phone = await browser.newContext({
    baseURL: process.env.VA_BASE_URL, viewport: { width: 390, height: 800 }, storageState: state,
  })
  const phonePage = await phone.newPage()
  await phonePage.goto('/generate')
  await byTestId(phonePage, 'gen-status').waitFor()
  await phonePage.waitForTimeout(800)
  await shoot(phonePage, { path: join(out, 'generate-phone.png') })
  await phone.close()

  if (await page.locator('[data-testid="gen-history-item"][data-status="running"]').count()) {
    await page.locator('[data-testid="gen-history-item"][data-status="running"]').click()
    await byTestId(page, 'gen-cancel').click()
  }
  await setup.close()
  console.log(`screenshots in ${out}`)
} finally {
  await browser.close()
}
