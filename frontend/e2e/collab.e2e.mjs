// A collaborative session in two browser contexts against the real server and the tiny demo model:
// alice starts a session from the Generate page and invites bob by link as an editor; both type into
// the prompt at the same time and end with the same text (each sees the other's cursor); bob presses
// Render and both watch the preview frames and the result; restoring the render brings its prompt back
// for both; the owner removes bob and his page stops editing, and his link no longer lets him back in.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/collab.e2e.mjs   (needs `run.py demo-model`)

import { assert, byTestId, freshContext, registerViaUi, runE2E } from './lib.mjs'

const MODEL = 'demo-tiny'
const JOB_TIMEOUT_MS = 60_000

/** The editor's text, without the collaborators' caret widgets (their names are in the DOM too). */
function editorText() {
  const content = document.querySelector('[data-testid="collab-prompt"]')
  if (!content) return null
  const copy = content.cloneNode(true)
  copy.querySelectorAll('.cm-ySelectionCaret, .cm-widgetBuffer').forEach((node) => node.remove())
  return [...copy.querySelectorAll('.cm-line')].map((line) => line.textContent).join('\n')
}
const promptText = (page) => page.evaluate(editorText)

async function choose(page, select, option, value) {
  await byTestId(page, select).click()
  const item = page.locator(`[data-testid="${option}"][data-value="${value}"], [data-testid="${option}"][data-model="${value}"]`)
  await item.click()
  await item.waitFor({ state: 'hidden' })
}

/** Records, in the page, whether a live preview frame and a result were ever shown. */
async function watchStage(page) {
  await page.evaluate(() => {
    const seen = { previews: new Set(), result: false }
    window.__stage = seen
    const look = () => {
      const preview = document.querySelector('[data-testid="collab-preview"]')
      if (preview) seen.previews.add(preview.getAttribute('data-step'))
      if (document.querySelector('[data-testid="collab-result"]')) seen.result = true
    }
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true })
  })
}

/**
 * Polls the editor's text until `accept(text)`. From Node, not with a string predicate in the page:
 * the server's Content-Security-Policy forbids evaluating strings there (no 'unsafe-eval').
 */
async function waitEditor(page, accept, what, timeout = 10_000) {
  const deadline = Date.now() + timeout
  for (;;) {
    const text = await promptText(page)
    if (accept(text)) return text
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: the prompt is ${JSON.stringify(text)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function waitText(page, expected, timeout = 10_000) {
  await waitEditor(page, (text) => text === expected, JSON.stringify(expected), timeout)
}

await runE2E('collab', async ({ browser, page: alice, log }) => {
  const bob = await (await freshContext(browser)).newPage()
  bob.on('pageerror', (err) => log('bob page error', String(err)))
  await registerViaUi(alice)
  const bobUser = await registerViaUi(bob)

  // Alice starts from the Generate page: her draft (model and all) seeds the document.
  await alice.goto('/generate')
  await alice.locator(`[data-testid="gen-model"]`).waitFor()
  await byTestId(alice, 'gen-prompt').fill('')
  await byTestId(alice, 'gen-write-together').click()
  await alice.waitForURL(/\/collab\/[0-9a-f]{32}$/)
  await byTestId(alice, 'collab-prompt').waitFor()
  assert.equal(await byTestId(alice, 'collab-role').getAttribute('data-role'), 'owner')
  await choose(alice, 'collab-model', 'collab-model-option', MODEL)
  await choose(alice, 'collab-width', 'collab-width-option', 64)
  await choose(alice, 'collab-height', 'collab-height-option', 64)
  await byTestId(alice, 'collab-steps').fill('30')
  await byTestId(alice, 'collab-steps').blur()

  // Invite bob by link as an editor.
  await byTestId(alice, 'collab-invite').click()
  await byTestId(alice, 'collab-invite-editor').click()
  await byTestId(alice, 'collab-invite-create').click()
  const link = await byTestId(alice, 'collab-invite-link').inputValue()
  assert.match(link, /\/collab\/join\/[A-Za-z0-9_-]+$/)
  await alice.keyboard.press('Escape')
  await bob.goto(link)
  await bob.waitForURL(/\/collab\/[0-9a-f]{32}$/)
  await byTestId(bob, 'collab-prompt').waitFor()
  assert.equal(await byTestId(bob, 'collab-role').getAttribute('data-role'), 'editor')
  // The settings alice chose are in bob's copy of the document.
  await bob.locator('[data-testid="collab-model"]', { hasText: MODEL }).waitFor()
  await alice.locator(`[data-testid="collab-member"][data-username="${bobUser.username}"][data-role="editor"]`).waitFor()
  await alice.locator(`[data-testid="collab-member"][data-username="${bobUser.username}"][data-online="true"]`).waitFor()

  log('both in the session')
  // Both type at the same time.
  await byTestId(alice, 'collab-prompt').click()
  await byTestId(bob, 'collab-prompt').click()
  await Promise.all([
    byTestId(alice, 'collab-prompt').pressSequentially('red fox ', { delay: 35 }),
    byTestId(bob, 'collab-prompt').pressSequentially('blue moon ', { delay: 35 }),
  ])
  // Whole phrases, trailing spaces included: each side's last key may still be on its way to the other.
  await waitEditor(alice, (t) => t && t.includes('red fox ') && t.includes('blue moon '), 'both phrases')
  const finalText = await promptText(alice)
  await waitText(bob, finalText)
  assert.equal(await promptText(bob), finalText)
  // Each sees the other's cursor, in colour, with a name.
  await alice.locator('.cm-ySelectionCaret').first().waitFor()
  await bob.locator('.cm-ySelectionCaret').first().waitFor()

  log('converged:', JSON.stringify(finalText))
  // Bob renders; both watch it form.
  await watchStage(alice)
  await watchStage(bob)
  await byTestId(bob, 'collab-render').click()
  for (const page of [alice, bob]) {
    await page.locator('[data-testid="collab-status"][data-status="done"]').waitFor({ timeout: JOB_TIMEOUT_MS })
    await page.waitForFunction(() => {
      const img = document.querySelector('[data-testid="collab-result"]')
      return img && img.complete && img.naturalWidth === 64
    }, null, { timeout: 10_000 })
    const stage = await page.evaluate(() => ({ previews: window.__stage.previews.size, result: window.__stage.result }))
    assert.ok(stage.previews >= 1, `${page === alice ? 'alice' : 'bob'} saw no preview frame`)
    assert.ok(stage.result)
    assert.equal(await page.locator('[data-testid="collab-strip-item"]').count(), 1)
  }

  log('both saw previews and the result')
  // Alice changes the prompt, then restores the render: both get its prompt back.
  await byTestId(alice, 'collab-prompt').click()
  await alice.keyboard.press('End')
  await alice.keyboard.type('XYZ')
  await waitText(bob, `${finalText}XYZ`)
  await byTestId(alice, 'collab-restore').click()
  await waitText(alice, finalText)
  await waitText(bob, finalText)

  // The owner removes bob: his page says so at once and his editor stops taking input.
  await byTestId(alice, `collab-remove-${bobUser.username}`).click()
  await alice.locator('.el-message-box__btns .el-button--primary').click()
  await byTestId(bob, 'collab-removed').waitFor()
  assert.equal(await byTestId(bob, 'collab-prompt').getAttribute('contenteditable'), 'false')
  await alice.locator(`[data-testid="collab-member"][data-username="${bobUser.username}"]`).waitFor({ state: 'detached' })

  log('bob cannot walk back in with his old link; alice revokes a link for anyone')
  await bob.goto(link)
  await byTestId(bob, 'collab-join-error').waitFor()
  await byTestId(alice, 'collab-invite').click()
  await byTestId(alice, 'collab-invite-uses').click()
  await alice.locator('.el-select-dropdown__item', { hasText: 'Anyone with the link' }).click()
  await byTestId(alice, 'collab-invite-create').click()
  await byTestId(alice, 'collab-invite-link').waitFor()
  const item = byTestId(alice, 'collab-invite-item')
  await item.first().waitFor()
  assert.equal(await item.count(), 1, 'only the new link still works (bob\'s one-person link is used up)')
  assert.match(await item.first().textContent(), /Editor · used 0 times · until/)
  await byTestId(alice, 'collab-invite-revoke').first().click()
  await byTestId(alice, 'collab-invite-list').waitFor({ state: 'detached' })
  const revokedLink = await byTestId(alice, 'collab-invite-link').inputValue()
  await bob.goto(revokedLink)
  await byTestId(bob, 'collab-join-error').waitFor()
})
