// Reports and the moderators' queue in three browser contexts: A publishes, B writes in its room and
// reports the post, A reports B's message; the moderator (VA_MOD_USER / VA_MOD_PASSWORD, made one by
// the pytest wrapper) sees both in the queue with reasons and reporters, hides the post — it vanishes
// from B's gallery and page, A sees the "hidden by moderators" banner — restores it from the Hidden tab,
// and hides the message, which leaves A's room live and stays, marked hidden, for its author B.
//   VA_MOD_USER=… VA_MOD_PASSWORD=… VA_BASE_URL=http://127.0.0.1:8888 node e2e/moderation.e2e.mjs

import { randomBytes } from 'node:crypto'
import { assert, byTestId, freshContext, loginViaUi, randomUsername, registerViaUi, runE2E, toast } from './lib.mjs'
import { generate, publish } from './community-lib.mjs'

const MOD = { username: process.env.VA_MOD_USER, password: process.env.VA_MOD_PASSWORD }
const card = (page, id) => page.locator(`[data-testid="post-card"][data-post-id="${id}"]`)
const item = (page, kind, target) => page.locator(`[data-testid="moderation-item"][data-kind="${kind}"][data-target="${target}"]`)

await runE2E('moderation', async ({ browser, page: pageA, log }) => {
  assert.ok(MOD.username && MOD.password, 'VA_MOD_USER and VA_MOD_PASSWORD name a moderator')
  const run = randomBytes(3).toString('hex')
  const pageB = await (await freshContext(browser)).newPage()
  const pageM = await (await freshContext(browser)).newPage()

  log('A and B register, the moderator logs in; only the moderator has the queue in the header')
  await Promise.all([
    registerViaUi(pageA, { username: randomUsername('alice') }),
    registerViaUi(pageB, { username: randomUsername('bob') }),
    loginViaUi(pageM, MOD),
  ])
  await byTestId(pageM, 'nav-moderation').waitFor()
  assert.equal(await byTestId(pageA, 'nav-moderation').count(), 0)
  await pageA.goto('/moderation')
  await pageA.waitForURL((url) => url.pathname === '/')

  log('A publishes; B writes in its room and reports the post; A reports B\'s message')
  await generate(pageA, { prompt: `cheap pixels ${run}`, seed: 99 })
  await byTestId(pageA, 'gen-publish').click()
  const title = `Pixels ${run}`
  const postId = await publish(pageA, { title })
  await pageA.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
  await pageB.goto(`/p/${postId}`)
  await pageB.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
  await byTestId(pageB, 'chat-input').fill('buy cheap pixels')
  await byTestId(pageB, 'chat-input').press('Enter')
  const message = pageA.locator('[data-testid="chat-message"]').filter({ hasText: 'buy cheap pixels' })
  await message.waitFor()
  const messageId = await message.getAttribute('data-message-id')
  await byTestId(pageB, 'post-report').click()
  await byTestId(pageB, 'report-details').fill('sells things')
  await byTestId(pageB, 'report-submit').click()
  await toast(pageB, 'success').waitFor()
  await message.hover()
  await message.locator('[data-testid="chat-message-report"]').click()
  await byTestId(pageA, 'report-reason').click()
  await pageA.locator('[data-testid="report-reason-option"][data-value="harassment"]').click()
  await byTestId(pageA, 'report-submit').click()
  await toast(pageA, 'success').waitFor()

  log('the moderator sees both in the queue, with reasons and reporters')
  await byTestId(pageM, 'nav-moderation').click()
  await pageM.waitForURL('**/moderation')
  await item(pageM, 'post', postId).waitFor()
  assert.equal(await item(pageM, 'post', postId).locator('[data-testid="moderation-subject-title"]').innerText(), title)
  assert.match(await item(pageM, 'post', postId).innerText(), /Spam[\s\S]*sells things/)
  await item(pageM, 'message', messageId).waitFor()
  assert.equal(await item(pageM, 'message', messageId).locator('[data-testid="moderation-subject-text"]').innerText(), 'buy cheap pixels')
  assert.match(await item(pageM, 'message', messageId).innerText(), /Harassment/)

  log('hide the post: gone from B\'s gallery and page; A sees the banner')
  await item(pageM, 'post', postId).locator('[data-testid="moderation-hide"]').click()
  await item(pageM, 'post', postId).waitFor({ state: 'detached' })
  await pageB.goto('/gallery')
  await byTestId(pageB, 'post-grid').waitFor()
  await pageB.locator('[data-testid="post-grid"][data-loading="false"]').waitFor()
  assert.equal(await card(pageB, postId).count(), 0, 'hidden from the gallery')
  await pageB.goto(`/p/${postId}`)
  await byTestId(pageB, 'post-not-found').waitFor()
  await pageA.reload()
  await byTestId(pageA, 'post-hidden-banner').waitFor()

  log('restore it from the Hidden tab: back in B\'s gallery')
  await byTestId(pageM, 'moderation-tab-hidden').click()
  await item(pageM, 'post', postId).locator('[data-testid="moderation-restore"]').click()
  await item(pageM, 'post', postId).waitFor({ state: 'detached' })
  await pageB.goto('/gallery')
  await card(pageB, postId).waitFor()

  log('hide the message: it leaves A\'s room live; its author still sees it, marked hidden')
  await pageA.reload()
  await pageA.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
  await message.waitFor()
  await byTestId(pageM, 'moderation-tab-open').click()
  await item(pageM, 'message', messageId).locator('[data-testid="moderation-hide"]').click()
  await item(pageM, 'message', messageId).waitFor({ state: 'detached' })
  await message.waitFor({ state: 'detached' })
  await pageB.goto(`/p/${postId}`)
  await pageB.locator(`[data-testid="chat-message"][data-message-id="${messageId}"] [data-testid="chat-message-hidden"]`).waitFor()
}, { timeoutMs: 100_000 })
