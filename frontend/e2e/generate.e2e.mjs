// The Generate page against the real server and its engine (the tiny random-weight model `demo-tiny`):
// the model list, Ctrl+Enter, live preview frames in step order, the final PNG downloaded, a job
// cancelled mid-run, the queue place, a refused submit (the per-user queue cap), progress that goes on
// after a reload, image to image, a history item loading its settings back into the form, a remix link.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/generate.e2e.mjs   (the server needs `run.py demo-model`)
// Timing: one step of demo-tiny takes ~15 ms on an idle CPU and much longer on a busy one, so the
// checks wait for states, never for durations.

import { readFile } from 'node:fs/promises'
import { assert, byTestId, makePng, registerViaUi, runE2E } from './lib.mjs'

const MODEL = 'demo-tiny'
/** Long enough for several preview frames even at the server's default 8 previews a second. */
const FIRST_STEPS = 40
/** The most the server allows: a job that is still running when we act on it. */
const LONG_STEPS = 150
/** A generous wait for a whole job on a loaded 2-core machine. */
const JOB_TIMEOUT_MS = 60_000
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]

const status = (page) => byTestId(page, 'gen-status').getAttribute('data-status')
const waitStatus = (page, value, timeout = JOB_TIMEOUT_MS) =>
  page.locator(`[data-testid="gen-status"][data-status="${value}"]`).waitFor({ timeout })
const progressStep = async (page) => Number(await byTestId(page, 'gen-progress').getAttribute('data-step'))

/** Waits until the current job's progress reaches `step` (or it stops running). */
async function waitStep(page, step, timeout = JOB_TIMEOUT_MS) {
  await page.waitForFunction((min) => {
    const bar = document.querySelector('[data-testid="gen-progress"]')
    return (bar && Number(bar.getAttribute('data-step')) >= min)
      || document.querySelector('[data-testid="gen-status"]')?.getAttribute('data-status') !== 'running'
  }, step, { timeout })
}

/** Picks an option of one of the form's selects (Element Plus renders them in a teleported list). */
async function choose(page, select, option, value) {
  await byTestId(page, select).click()
  const item = page.locator(`[data-testid="${option}"][data-value="${value}"], [data-testid="${option}"][data-model="${value}"]`)
  await item.click()
  await item.waitFor({ state: 'hidden' })
}

async function setSize(page, side) {
  await choose(page, 'gen-width', 'gen-width-option', side)
  await choose(page, 'gen-height', 'gen-height-option', side)
}

/** Records every preview frame shown (its data-step and its image URL) as it changes, in the page. */
async function recordFrames(page) {
  await page.evaluate(() => {
    const frames = []
    window.__frames = frames
    window.__framesObserver?.disconnect()
    const record = () => {
      const img = document.querySelector('[data-testid="gen-preview"]')
      if (!img) return
      const frame = { step: Number(img.getAttribute('data-step')), src: img.getAttribute('src'), width: 0 }
      const last = frames.at(-1)
      if (last && last.step === frame.step && last.src === frame.src) return
      frames.push(frame)
      img.decode().then(() => { frame.width = img.naturalWidth }, () => {})
    }
    window.__framesObserver = new MutationObserver(record)
    window.__framesObserver.observe(document.body, {
      subtree: true, childList: true, attributes: true, attributeFilter: ['src', 'data-step'],
    })
  })
}

/** The id of the job shown in the live area: the history item marked current. */
const currentJobId = (page) => page.locator('[data-testid="gen-history-item"][aria-current="true"]').getAttribute('data-job-id')

await runE2E('generate', async ({ page, log }) => {
  log('register; Generate is in the header')
  await registerViaUi(page)
  await byTestId(page, 'nav-generate').click()
  await page.waitForURL('**/generate')
  await waitStatus(page, 'idle')
  await byTestId(page, 'gen-history-empty').waitFor()

  log(`the model list shows ${MODEL} with its family`)
  await byTestId(page, 'gen-model').click()
  const option = page.locator(`[data-testid="gen-model-option"][data-model="${MODEL}"]`)
  await option.waitFor()
  assert.match(await option.innerText(), /SD ?1/)
  await option.click()
  await option.waitFor({ state: 'hidden' })
  assert.equal(await byTestId(page, 'gen-width').innerText().then((s) => s.trim()), '512', 'the native size is the default')

  log(`64×64, ${FIRST_STEPS} steps, a seed from the dice`)
  await setSize(page, 64)
  await byTestId(page, 'gen-steps').fill(String(FIRST_STEPS))
  await byTestId(page, 'gen-dice').click()
  const seed = await byTestId(page, 'gen-seed').inputValue()
  assert.match(seed, /^\d+$/, 'the dice sets a seed')
  const prompt = 'a lighthouse on a cliff at dusk, oil painting'
  await byTestId(page, 'gen-prompt').fill(prompt)
  assert.equal(await byTestId(page, 'gen-prompt-counter').innerText(), `${prompt.length} / 2000`)

  log('Ctrl+Enter in the prompt submits; preview frames arrive in step order')
  await recordFrames(page)
  await byTestId(page, 'gen-prompt').press('Control+Enter')
  await byTestId(page, 'gen-result-image').waitFor({ timeout: JOB_TIMEOUT_MS })
  await waitStatus(page, 'done')
  const frames = await page.evaluate(() => window.__frames)
  log(`frames at steps ${frames.map((f) => f.step).join(', ')}`)
  const steps = frames.map((f) => f.step)
  assert.ok(new Set(steps).size >= 3, `at least 3 distinct preview frames (got ${steps.join(', ')})`)
  assert.deepEqual(steps, [...steps].sort((a, b) => a - b), 'frames come in increasing step order')
  assert.equal(new Set(steps).size, steps.length, 'no step shown twice')
  assert.equal(new Set(frames.map((f) => f.src)).size, frames.length, 'each frame is a new image')
  assert.ok(frames.every((f) => f.src.startsWith('blob:')), 'frames are decoded from the socket bytes')
  // A frame replaced before the browser decoded it never reports a size (decode() rejects when the src
  // changes), so on a fast run only a few do: one decoded frame proves the bytes are a real image.
  assert.ok(frames.some((f) => f.width > 0), 'the frames are real images')
  assert.ok(steps.at(-1) <= FIRST_STEPS)

  log('the final image, its settings, and a PNG download')
  const firstJob = await currentJobId(page)
  assert.ok(firstJob)
  const firstImage = await byTestId(page, 'gen-result-image').getAttribute('data-image-id')
  assert.ok(await byTestId(page, 'gen-result-image').evaluate((img) => img.complete && img.naturalWidth === 64))
  assert.equal(await byTestId(page, 'gen-detail-seed').locator('dd').innerText(), seed, 'the seed asked for was used')
  assert.equal(await byTestId(page, 'gen-detail-size').locator('dd').innerText(), '64 × 64')
  assert.equal(await byTestId(page, 'gen-detail-steps').locator('dd').innerText(), String(FIRST_STEPS))
  const link = byTestId(page, 'gen-download')
  assert.match(await link.getAttribute('href'), /^\/api\/images\/[0-9a-f]+\/file$/)
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()])
  assert.match(download.suggestedFilename(), /\.png$/)
  const png = await readFile(await download.path())
  assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE, 'the download is a PNG')
  await page.locator(`[data-testid="gen-history-item"][data-job-id="${firstJob}"][data-status="done"] img`).waitFor()

  log(`a ${LONG_STEPS}-step job at 256×256, cancelled mid-run`)
  await setSize(page, 256)
  await byTestId(page, 'gen-steps').fill(String(LONG_STEPS))
  await byTestId(page, 'gen-seed').fill('')
  await byTestId(page, 'gen-prompt').fill('a storm over the sea, cancelled')
  await byTestId(page, 'gen-submit').click()
  await waitStatus(page, 'running')
  await waitStep(page, 3)
  assert.equal(await status(page), 'running', 'still running after 3 steps')
  const stepAtCancel = await progressStep(page)
  assert.equal(await byTestId(page, 'gen-progress').getAttribute('data-total'), String(LONG_STEPS))
  await byTestId(page, 'gen-cancel').click()
  await waitStatus(page, 'cancelled', 15_000)
  const cancelledJob = await currentJobId(page)
  await page.locator(`[data-testid="gen-history-item"][data-job-id="${cancelledJob}"][data-status="cancelled"]`).waitFor()
  const stoppedAt = await progressStep(page)
  assert.ok(stoppedAt >= stepAtCancel && stoppedAt < LONG_STEPS, `stopped at step ${stoppedAt} of ${LONG_STEPS}`)
  await byTestId(page, 'gen-cancel').waitFor({ state: 'detached' })

  log('another long job, at the native size (so that it still runs after all that follows)')
  await byTestId(page, 'gen-native-size').click()
  assert.equal((await byTestId(page, 'gen-width').innerText()).trim(), '512')
  log('the next one waits in the queue with its place shown; the queue cap refuses more')
  await byTestId(page, 'gen-prompt').fill('a slow sunrise, watched across a reload')
  await byTestId(page, 'gen-submit').click()
  await waitStatus(page, 'running')
  const runningJob = await currentJobId(page)
  await byTestId(page, 'gen-prompt').fill('waiting my turn')
  await byTestId(page, 'gen-submit').click()
  await waitStatus(page, 'queued', 10_000)
  assert.match(await byTestId(page, 'gen-place').innerText(), /next/i)
  const queued = [await currentJobId(page)]
  let refusal = ''
  for (let tries = 0; tries < 8 && !refusal; tries++) {
    await byTestId(page, 'gen-submit').click()
    await page.waitForFunction(() => !document.querySelector('[data-testid="gen-submit"]').classList.contains('is-loading'))
    if (await byTestId(page, 'gen-error').isVisible()) refusal = await byTestId(page, 'gen-error').innerText()
    else queued.push(await currentJobId(page))
  }
  log(`refused after ${queued.length} waiting: "${refusal.trim()}"`)
  assert.match(refusal, /wait|queue/i, 'the server refused with a message that says why')
  assert.ok(queued.length >= 1)
  await byTestId(page, 'gen-submit').waitFor() // the form stays usable

  log('a waiting job is cancelled at once (from the history strip)')
  await page.locator(`[data-testid="gen-history-item"][data-job-id="${queued[0]}"]`).click()
  await waitStatus(page, 'queued')
  await byTestId(page, 'gen-error').waitFor({ state: 'detached' })
  await byTestId(page, 'gen-cancel').click()
  await waitStatus(page, 'cancelled', 10_000)
  await page.evaluate(async (ids) => {
    // The rest are cleared over HTTP, as a script would (DELETE /api/jobs/<id> cancels).
    const xsrf = decodeURIComponent(document.cookie.match(/(?:^|; )_xsrf=([^;]*)/)?.[1] ?? '')
    await Promise.all(ids.map((id) => fetch(`/api/jobs/${id}`, { method: 'DELETE', headers: { 'X-XSRFToken': xsrf } })))
  }, queued.slice(1))
  for (const id of queued.slice(1)) {
    await page.locator(`[data-testid="gen-history-item"][data-job-id="${id}"][data-status="cancelled"]`).waitFor()
  }

  log('reload while it runs: progress and previews go on')
  await page.locator(`[data-testid="gen-history-item"][data-job-id="${runningJob}"]`).click()
  const before = await status(page) === 'running' ? await progressStep(page) : null
  if (before === null || before > LONG_STEPS - 20) {
    log('(the job finished before the reload could be tried: this machine is fast; skipping that part)')
  } else {
    await page.reload()
    await waitStatus(page, 'running', 15_000)
    assert.equal(await currentJobId(page), runningJob, 'the running job is shown again')
    assert.equal(await byTestId(page, 'gen-steps').inputValue(), String(LONG_STEPS), 'the settings were remembered')
    await waitStep(page, before + 1)
    const afterReload = await progressStep(page)
    log(`step ${before} before the reload, ${afterReload} after`)
    if (await status(page) === 'running') {
      assert.ok(afterReload >= before, 'the replay brings the steps back')
      await recordFrames(page)
      await waitStep(page, afterReload + 2)
      await byTestId(page, 'gen-preview').waitFor({ timeout: 10_000 })
      const later = await page.evaluate(() => window.__frames)
      assert.ok(later.length >= 1 && later.every((f) => f.step > 0), 'new preview frames after the reload')
      await byTestId(page, 'gen-cancel').click()
      await waitStatus(page, 'cancelled', 15_000)
    }
  }

  log('image to image: a picked picture, a strength, sent over HTTP')
  assert.equal(await byTestId(page, 'gen-strength').count(), 0, 'no strength without an init image')
  await byTestId(page, 'gen-init-input').setInputFiles({ name: 'start.png', mimeType: 'image/png', buffer: makePng(64, 64) })
  await byTestId(page, 'gen-init-preview').waitFor()
  await byTestId(page, 'gen-strength').fill('0.5')
  await byTestId(page, 'gen-steps').fill('8')
  await byTestId(page, 'gen-prompt').fill('the same gradient, repainted')
  await byTestId(page, 'gen-submit').click()
  await waitStatus(page, 'done')
  assert.equal(await byTestId(page, 'gen-detail-strength').locator('dd').innerText(), '0.5')
  await byTestId(page, 'gen-result-image').waitFor()
  await byTestId(page, 'gen-init-remove').click()
  await byTestId(page, 'gen-strength').waitFor({ state: 'detached' })

  log('a history item loads its settings back into the form')
  await page.locator(`[data-testid="gen-history-item"][data-job-id="${firstJob}"]`).click()
  await waitStatus(page, 'done')
  assert.equal(await byTestId(page, 'gen-prompt').inputValue(), prompt)
  assert.equal(await byTestId(page, 'gen-steps').inputValue(), String(FIRST_STEPS))
  assert.equal(await byTestId(page, 'gen-seed').inputValue(), seed)
  assert.equal((await byTestId(page, 'gen-width').innerText()).trim(), '64')
  await byTestId(page, 'gen-result-image').waitFor()

  log('a remix link (/generate?from=<image id>) loads that image\'s settings')
  await byTestId(page, 'gen-prompt').fill('something else entirely')
  await byTestId(page, 'gen-steps').fill('12')
  await page.goto(`/generate?from=${firstImage}`)
  await page.waitForFunction((p) => document.querySelector('[data-testid="gen-prompt"]')?.value === p, prompt)
  assert.equal(await byTestId(page, 'gen-seed').inputValue(), seed)
  assert.equal(await byTestId(page, 'gen-steps').inputValue(), String(FIRST_STEPS))
  await page.waitForURL((url) => !url.searchParams.has('from'))

}, { timeoutMs: 85_000 })
