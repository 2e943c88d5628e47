// Issue 19, items 1, 5 and 8, between people in three browser contexts (the post is made beforehand):
//  5. the chat box beside an artwork and the bell name it by its title ("Message about “Lighthouse”",
//     "mentioned you beside “Lighthouse”"), never "post:12";
//  8. `@` in the chat box offers the people in the room first, then others from the server, chosen with
//     the keyboard;
//  1. likes: unlike-then-like tells nothing new, two likers are one grouped notification; a message deleted
//     takes its notification away; a mention edited out loses its highlight and its notification.
// Env: VA_POST (id), VA_POST_TITLE, VA_USERS = "owner:password,bob:password,carol:password" (the owner first).

import { assert, byTestId, freshContext, loginViaUi, runE2E } from './lib.mjs'

const POST = process.env.VA_POST
const TITLE = process.env.VA_POST_TITLE
const [owner, bob, carol] = process.env.VA_USERS.split(',').map((pair) => {
  const [username, password] = pair.split(':')
  return { username, password }
})
const badge = (page) => byTestId(page, 'notif-badge').getAttribute('data-count').then(Number)
const openRoom = async (page) => {
  await page.goto(`/p/${POST}`)
  await page.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
}

await runE2E('people', async ({ browser, page: ownerPage, log }) => {
  const bobPage = await (await freshContext(browser)).newPage()
  const carolPage = await (await freshContext(browser)).newPage()
  await Promise.all([loginViaUi(ownerPage, owner), loginViaUi(bobPage, bob), loginViaUi(carolPage, carol)])
  await Promise.all([openRoom(ownerPage), openRoom(bobPage)])

  log('5: the chat box names the artwork')
  const box = byTestId(bobPage, 'chat-input')
  assert.equal(await box.getAttribute('placeholder'), `Message about “${TITLE}”`)

  log('8: @ offers the people here first, then others; the keyboard picks')
  await box.click()
  await box.pressSequentially('@')
  const options = byTestId(bobPage, 'mention-option')
  await options.first().waitFor()
  assert.equal(await options.first().getAttribute('data-username'), owner.username, 'the owner is in the room: first')
  assert.equal(await options.first().getAttribute('data-in-room'), 'true')
  await box.pressSequentially(carol.username.slice(0, 4))
  await bobPage.locator(`[data-testid="mention-option"][data-username="${carol.username}"]`).waitFor()
  assert.equal(await bobPage.locator(`[data-testid="mention-option"][data-username="${carol.username}"]`).getAttribute('data-in-room'), 'false',
    'someone not in the room comes from the server')
  await box.press('Enter')
  assert.equal(await box.inputValue(), `@${carol.username} `, 'Enter took the suggestion (and sent nothing)')
  await box.pressSequentially(`and @${owner.username.slice(0, 3)}`)
  await options.first().waitFor()
  const names = await options.evaluateAll((els) => els.map((el) => el.dataset.username))
  const ownerAt = names.indexOf(owner.username)
  assert.ok(ownerAt >= 0, `the owner is offered: ${names}`)
  for (let i = 0; i < ownerAt; i++) await box.press('ArrowDown')
  assert.equal(await bobPage.locator('[data-testid="mention-option"][aria-selected="true"]').getAttribute('data-username'), owner.username)
  await box.press('Tab')
  await box.pressSequentially('look at this')
  assert.equal(await box.inputValue(), `@${carol.username} and @${owner.username} look at this`)
  await box.press('Enter')
  const sent = bobPage.locator('[data-testid="chat-message"]').filter({ hasText: 'look at this' })
  await sent.waitFor()

  log('5: the owner\'s bell names the artwork by its title')
  await ownerPage.locator('[data-testid="notif-badge"][data-count="1"]').waitFor()
  await byTestId(ownerPage, 'notif-bell').click()
  const mention = ownerPage.locator('[data-testid="notif-item"][data-kind="mention"]')
  await mention.waitFor()
  const sentence = await mention.locator('[data-testid="notif-text"]').innerText()
  assert.ok(sentence.includes(`“${TITLE}”`) && !/post:\d/.test(sentence), sentence)
  await byTestId(ownerPage, 'notif-read-all').click()
  await ownerPage.keyboard.press('Escape')

  log('1: the mention highlight and notification go when an edit takes the mention out')
  await carolPage.locator('[data-testid="notif-badge"][data-count="1"]').waitFor()
  await openRoom(carolPage)
  const carolSees = carolPage.locator('[data-testid="chat-message"]').filter({ hasText: 'look at this' })
  await carolSees.locator('.message-text__mention.is-me').waitFor()
  await sent.hover()
  await sent.locator('[data-testid="chat-message-edit"]').click()
  await byTestId(bobPage, 'chat-edit-input').fill(`@${owner.username} look at this`)
  await byTestId(bobPage, 'chat-edit-save').click()
  await carolSees.locator('[data-testid="chat-message-edited"]').waitFor()
  assert.equal(await carolSees.locator('.message-text__mention.is-me').count(), 0, 'no highlight for carol any more')
  assert.equal(await carolSees.evaluate((el) => el.classList.contains('mentions-me')), false)
  await carolPage.locator('[data-testid="notif-badge"][data-count="0"]').waitFor()

  log('1: likes: unlike and like again tells nothing new; two likers are one notification')
  const like = byTestId(bobPage, 'like-button')
  // Each click waits for the server's answer (the button ignores clicks while one is on its way).
  const click = (button, page) => Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === `/api/posts/${POST}/like`), button.click(),
  ])
  for (let i = 0; i < 3; i++) {
    await click(like, bobPage)
    await click(like, bobPage)
  }
  await bobPage.locator('[data-testid="like-count"]').filter({ hasText: '0' }).waitFor()
  await click(like, bobPage)
  await ownerPage.locator('[data-testid="notif-badge"][data-count="1"]').waitFor()
  await openRoom(carolPage)
  await click(byTestId(carolPage, 'like-button'), carolPage)
  await byTestId(ownerPage, 'like-count').filter({ hasText: '2' }).waitFor()
  await ownerPage.waitForTimeout(300) // a stray third notification would arrive by now
  assert.equal(await badge(ownerPage), 1, 'one unread notification for all the likes')
  await byTestId(ownerPage, 'notif-bell').click()
  const likes = ownerPage.locator('[data-testid="notif-item"][data-kind="like"]')
  await likes.first().waitFor()
  assert.equal(await likes.count(), 1)
  assert.match(await likes.locator('[data-testid="notif-text"]').innerText(), /and one other liked your post/)
  await ownerPage.keyboard.press('Escape')

  log('1: a deleted message takes its notification away')
  await sent.hover()
  await sent.locator('[data-testid="chat-message-delete"]').click()
  await bobPage.locator('.el-message-box .el-button--primary').click()
  await sent.waitFor({ state: 'detached' })
  await byTestId(ownerPage, 'notif-bell').click()
  await mention.waitFor({ state: 'detached' })
  assert.equal(await ownerPage.locator('[data-testid="notif-item"][data-kind="message"]').count(), 0)
})
