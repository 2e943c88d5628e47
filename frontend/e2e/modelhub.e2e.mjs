// Model hub, as a person would use it: open Models from the header (empty state), share a new model,
// have a pickle refused with a clear reason, upload a small .safetensors with tus (progress bar), see its
// hashes and detected kind, find it by searching with Enter, open it and download it (same sha256).
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/modelhub.e2e.mjs

import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { assert, byTestId, randomUsername, registerViaUi, runE2E } from './lib.mjs'

/** A valid .safetensors file: one F32 LoRA-like tensor pair of about `bytes` bytes. */
function safetensors(bytes) {
  const rank = 4
  const width = Math.max(8, Math.floor(bytes / 4 / rank / 2))
  const size = rank * width * 4
  const header = {
    __metadata__: { ss_network_dim: String(rank) },
    'lora_unet_mid_block_attentions_0_proj_in.lora_down.weight': { dtype: 'F32', shape: [rank, width], data_offsets: [0, size] },
    'lora_unet_mid_block_attentions_0_proj_in.lora_up.weight': { dtype: 'F32', shape: [width, rank], data_offsets: [size, 2 * size] },
  }
  const json = Buffer.from(JSON.stringify(header))
  const length = Buffer.alloc(8)
  length.writeBigUInt64LE(BigInt(json.length))
  const data = Buffer.alloc(2 * size)
  for (let i = 0; i < data.length; i += 4) data.writeFloatLE(Math.sin(i), i)
  return Buffer.concat([length, json, data])
}

await runE2E('modelhub', async ({ page, log }) => {
  await registerViaUi(page)
  const word = randomUsername('ink').replace(/_/g, '')

  log('Models from the header: nothing there yet')
  await byTestId(page, 'nav-models').click()
  await page.waitForURL('**/models')
  await byTestId(page, 'models-empty').waitFor()

  log('share a new model')
  await byTestId(page, 'models-new').click()
  await page.waitForURL('**/models/new')
  await byTestId(page, 'model-form-name').fill(`Ink Wash ${word}`)
  await byTestId(page, 'model-form-description').fill('# Ink wash\n\nTrigger word: **inkwash**. <script>alert(1)</script>')
  await byTestId(page, 'model-form-submit').click()
  await page.waitForURL(/\/models\/\d+\/upload/)
  await byTestId(page, 'upload-drop').waitFor()

  log('a pickle renamed to .safetensors is refused with the reason')
  const pickle = Buffer.from([0x80, 0x04, 0x95, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x7d, 0x94, 0x2e])
  await byTestId(page, 'upload-input').setInputFiles({ name: 'sneaky.safetensors', mimeType: 'application/octet-stream', buffer: pickle })
  const error = byTestId(page, 'upload-error')
  await error.waitFor()
  const reason = await error.innerText()
  log('refused:', reason)
  assert.match(reason, /pickle/i)

  log('a real file uploads with a progress bar and lands on the model page')
  const file = safetensors(300_000)
  const sha = createHash('sha256').update(file).digest('hex')
  await byTestId(page, 'upload-input').setInputFiles({ name: 'ink-wash.safetensors', mimeType: 'application/octet-stream', buffer: file })
  await byTestId(page, 'upload-progress').waitFor()
  await page.waitForURL(/\/models\/\d+$/, { timeout: 20_000 })
  const row = byTestId(page, 'model-file')
  await row.waitFor()
  assert.equal(await row.getAttribute('data-filename'), 'ink-wash.safetensors')
  assert.match(await byTestId(page, 'file-sha256').innerText(), new RegExp(sha))
  assert.match(await byTestId(page, 'file-autov2').innerText(), new RegExp(sha.slice(0, 10).toUpperCase()))
  assert.match(await row.innerText(), /LoRA/)
  const description = await byTestId(page, 'model-description').innerHTML()
  assert.ok(description.includes('<h1>Ink wash</h1>') && !description.includes('<script>'), description)

  log('find it by searching with Enter')
  await byTestId(page, 'nav-models').click()
  await page.waitForURL('**/models')
  await byTestId(page, 'models-search').fill(word)
  await byTestId(page, 'models-search').press('Enter')
  await page.waitForURL(new RegExp(`q=${word}`))
  await page.waitForFunction(() => {
    const list = document.querySelector('[data-testid="models-list"]')
    return list && list.getAttribute('data-loading') === 'false' && list.getAttribute('data-count') === '1'
  }, null, { timeout: 10_000 })
  const card = byTestId(page, 'model-card')
  assert.equal(await card.count(), 1)
  assert.equal(await card.getAttribute('data-name'), `Ink Wash ${word}`)

  log('open it and download the file: the same bytes')
  await card.click()
  await page.waitForURL(/\/models\/\d+$/)
  const [download] = await Promise.all([page.waitForEvent('download'), byTestId(page, 'file-download').click()])
  assert.equal(download.suggestedFilename(), 'ink-wash.safetensors')
  const saved = readFileSync(await download.path())
  assert.equal(createHash('sha256').update(saved).digest('hex'), sha)

  log('a bigger upload on a slow link, interrupted by a reload, resumes where it stopped')
  await page.goto(new URL(page.url()).pathname + '/upload')
  await byTestId(page, 'upload-drop').waitFor()
  // From a file on disk, so the browser sees the same file (name, size, mtime) after the reload.
  const bigPath = join(mkdtempSync(join(tmpdir(), 'va-e2e-')), 'ink-wash-xl.safetensors')
  const big = safetensors(12 * 1024 * 1024)
  writeFileSync(bigPath, big)
  const cdp = await page.context().newCDPSession(page)
  await cdp.send('Network.enable')
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 3 * 1024 * 1024,
  })
  await byTestId(page, 'upload-input').setInputFiles(bigPath)
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="upload-progress"]')
    ?.getAttribute('data-percent') ?? 0) >= 20, null, { timeout: 15_000 })
  await page.reload()
  await byTestId(page, 'upload-drop').waitFor()
  // Still slow, so the page is there to be looked at before the upload finishes and moves on.
  await byTestId(page, 'upload-input').setInputFiles(bigPath)
  await byTestId(page, 'upload-resumed').waitFor({ timeout: 10_000 })
  const startPercent = Number(await byTestId(page, 'upload-progress').getAttribute('data-start-percent'))
  log('resumed from', startPercent, '%')
  assert.ok(startPercent >= 10, `the upload started again from ${startPercent}%`)
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  })
  await page.waitForURL(/\/models\/\d+$/, { timeout: 20_000 })
  const bigSha = createHash('sha256').update(big).digest('hex')
  const names = await byTestId(page, 'model-file').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-filename')))
  assert.deepEqual(names.sort(), ['ink-wash-xl.safetensors', 'ink-wash.safetensors'])
  assert.match(await page.locator('[data-filename="ink-wash-xl.safetensors"] [data-testid="file-sha256"]').innerText(),
    new RegExp(bigSha))
  log('pass')
})
