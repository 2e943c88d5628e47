// Helpers shared by the community browser tests: generate a tiny image on the Generate page and
// publish it through the publish dialog.

import { assert, byTestId } from './lib.mjs'

export const MODEL = 'demo-tiny'
/** A whole 64×64 job of a few steps, with room for a loaded 2-core machine. */
export const JOB_TIMEOUT_MS = 40_000

async function choose(page, select, option, value) {
  await byTestId(page, select).click()
  const item = page.locator(`[data-testid="${option}"][data-value="${value}"], [data-testid="${option}"][data-model="${value}"]`)
  await item.click()
  await item.waitFor({ state: 'hidden' })
}

/** On /generate: a 64×64 image of `prompt` with `seed`; resolves with the job id once it is done. */
export async function generate(page, { prompt, seed, steps = 3, batch = 1 }) {
  if (!new URL(page.url()).pathname.startsWith('/generate')) await page.goto('/generate')
  await byTestId(page, 'gen-status').waitFor()
  await choose(page, 'gen-model', 'gen-model-option', MODEL)
  await choose(page, 'gen-width', 'gen-width-option', 64)
  await choose(page, 'gen-height', 'gen-height-option', 64)
  await byTestId(page, 'gen-steps').fill(String(steps))
  await byTestId(page, 'gen-seed').fill(String(seed))
  await byTestId(page, 'gen-prompt').fill(prompt)
  await byTestId(page, 'gen-batch').locator('input').fill(String(batch))
  await byTestId(page, 'gen-batch').locator('input').blur()
  const before = await page.locator('[data-testid="gen-history-item"]').count()
  await byTestId(page, 'gen-submit').click()
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="gen-history-item"]').length > n, before)
  await page.locator('[data-testid="gen-status"][data-status="done"]').waitFor({ timeout: JOB_TIMEOUT_MS })
  await byTestId(page, 'gen-result-image').waitFor()
  const job = await page.locator('[data-testid="gen-history-item"][aria-current="true"]').getAttribute('data-job-id')
  assert.ok(job)
  return job
}

/** Fills the open publish dialog and submits; resolves with the new post's id (the page goes to it). */
export async function publish(page, { title, description = '', tags = [], nsfw = false }) {
  const dialog = page.locator('.el-dialog').filter({ has: byTestId(page, 'publish-title') })
  await dialog.waitFor()
  await byTestId(page, 'publish-title').fill(title)
  if (description) await byTestId(page, 'publish-description').fill(description)
  for (const tag of tags) {
    await byTestId(page, 'publish-tags').fill(tag)
    await byTestId(page, 'publish-tags').press('Enter')
  }
  if (nsfw) await dialog.locator('.el-switch').click()
  await byTestId(page, 'publish-submit').click()
  await page.waitForURL(/\/p\/\d+$/, { timeout: 15_000 })
  await byTestId(page, 'post-title').filter({ hasText: title }).waitFor()
  return Number(new URL(page.url()).pathname.split('/').pop())
}
