// Issue 19, items 6, 7 and 9: what the server refuses is told in place, in its words, and goes when fixed.
//  9. register with a taken name: the reason sits under the name, and goes as soon as the name is changed;
//  6. the gallery with a bad tag filter: the server's reason beside the filter, no "could not load" + Retry;
//  7. a text file renamed .safetensors: "not a safetensors file", and the upload does not look finished.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/refusals.e2e.mjs

import { assert, byTestId, logoutViaUi, randomPassword, randomUsername, registerViaUi, runE2E } from './lib.mjs'

await runE2E('refusals', async ({ page, log }) => {
  const taken = randomUsername('taken')
  await registerViaUi(page, { username: taken })
  await logoutViaUi(page)

  log('9: a taken name is refused under the name field, and the message goes once the name changes')
  await page.goto('/register')
  await byTestId(page, 'register-username').fill(taken)
  await byTestId(page, 'register-password').fill(randomPassword())
  await byTestId(page, 'register-submit').click()
  const nameError = byTestId(page, 'register-username-item').locator('.el-form-item__error')
  await nameError.waitFor()
  assert.match(await nameError.innerText(), /taken/i)
  assert.equal(await byTestId(page, 'register-error').count(), 0, 'said once, where it applies')
  await byTestId(page, 'register-username').pressSequentially('2')
  await nameError.waitFor({ state: 'detached' })
  await byTestId(page, 'register-password').fill(randomPassword())
  assert.equal(await byTestId(page, 'register-username-item').locator('.el-form-item__error').count(), 0)

  log('6: a tag filter the server refuses shows its reason beside the filter')
  await page.goto('/gallery?tag=bad%20tag!')
  const filterError = byTestId(page, 'gallery-filter-error')
  await filterError.waitFor()
  assert.match(await filterError.innerText(), /`tag` must be 1–40 letters or digits/)
  assert.equal(await filterError.getAttribute('data-field'), 'tag')
  assert.equal(await byTestId(page, 'post-grid-retry').count(), 0, 'no Retry that cannot help')
  assert.equal(await byTestId(page, 'post-grid-error').count(), 0)
  await byTestId(page, 'gallery-tag').fill('sea')
  await byTestId(page, 'gallery-tag').press('Enter')
  await filterError.waitFor({ state: 'detached' })
  await byTestId(page, 'post-grid-empty').waitFor()

  log('7: a text file renamed .safetensors is "not a safetensors file", and the upload does not look finished')
  await registerViaUi(page, { username: randomUsername('maker') })
  await page.goto('/models/new')
  await byTestId(page, 'model-form-name').fill(`Cat LoRA ${Date.now()}`)
  await byTestId(page, 'model-form-submit').click()
  await page.waitForURL(/\/models\/\d+\/upload/)
  const text = Buffer.from('# My LoRA\nTrained on 40 photos of my cat. Trigger word: whiskers.\n'.repeat(200))
  await byTestId(page, 'upload-input').setInputFiles({ name: 'cat.safetensors', mimeType: 'application/octet-stream', buffer: text })
  const uploadError = byTestId(page, 'upload-error')
  await uploadError.waitFor()
  const reason = await uploadError.innerText()
  assert.match(reason, /not a safetensors file/i)
  assert.doesNotMatch(reason, /claims [\d,]+ bytes/, `no header arithmetic: ${reason}`)
  const panel = page.locator('[data-testid="upload-progress"][data-state="refused"]')
  await panel.waitFor()
  await byTestId(page, 'upload-refused').waitFor()
  assert.equal(await panel.locator('.el-progress').count(), 0, 'no full bar')
  assert.doesNotMatch(await panel.innerText(), /Left:/, 'no "Left: 0 s"')
})
