// Live chat between two users in two browser contexts, against the real server and its WebSocket:
// typing indicator, a message with an emoji, a line break and an @mention, presence, history after a
// reload, edit and delete, a signed-out reader, messages missed while offline filled in once each,
// the socket following log-out and log-in, the length limit, and the server's send rate limit.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/chat.e2e.mjs

import { randomBytes } from 'node:crypto'
import { assert, byTestId, freshContext, logoutViaUi, randomUsername, registerViaUi, runE2E } from './lib.mjs'

/** Texts of the messages shown in a page's chat, oldest first. */
const messageTexts = (page) => byTestId(page, 'chat-message-text').allInnerTexts()

/** The message ids shown, oldest first. */
const messageIds = (page) =>
  byTestId(page, 'chat-messages').locator('[data-testid="chat-message"]').evaluateAll((els) => els.map((el) => el.dataset.messageId))

async function openRoom(page, room) {
  await page.goto(`/rooms/${room}`)
  await byTestId(page, 'chat-panel').waitFor()
  await page.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
}

/** Sends from the composer with Enter and waits until the server has stored it (no pending copy left). */
async function send(page, text) {
  const input = byTestId(page, 'chat-input')
  await input.fill(text)
  await input.press('Enter')
  await byTestId(page, 'chat-message-text').filter({ hasText: text }).waitFor()
  await byTestId(page, 'chat-pending').waitFor({ state: 'detached' })
}

await runE2E('chat', async ({ browser, page: pageA, log }) => {
  const room = `e2e-${randomBytes(4).toString('hex')}`
  const contextB = await freshContext(browser)
  const pageB = await contextB.newPage()
  const errorsB = []
  pageB.on('pageerror', (err) => errorsB.push(String(err)))

  log('register two users in two browser contexts')
  const [alice, bob] = await Promise.all([
    registerViaUi(pageA, { username: randomUsername('alice') }),
    registerViaUi(pageB, { username: randomUsername('bob') }),
  ])

  log(`both open the room #${room} from the Rooms page`)
  await pageA.goto('/')
  await byTestId(pageA, 'nav-rooms').click()
  await byTestId(pageA, 'room-link-lobby').waitFor()
  await byTestId(pageA, 'rooms-join-input').fill('Not A Room!')
  await byTestId(pageA, 'rooms-join-input').press('Enter')
  await byTestId(pageA, 'rooms-join-error').waitFor()
  await byTestId(pageA, 'rooms-join-input').fill(room)
  await byTestId(pageA, 'rooms-join-input').press('Enter')
  await pageA.waitForURL(`**/rooms/${room}`)
  await pageA.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
  await byTestId(pageA, `room-link-${room}`).waitFor()
  await openRoom(pageB, room)
  await byTestId(pageB, 'chat-empty').waitFor()

  log('B sees A in the presence list')
  await pageB.locator(`[data-testid="chat-presence-user"][data-username="${alice.username}"]`).waitFor()

  log('A types; B sees the typing indicator')
  const text = `Hi @${bob.username} 🎨 welcome to the room!`
  await byTestId(pageA, 'chat-input').pressSequentially(text.slice(0, 12), { delay: 20 })
  await byTestId(pageB, 'chat-typing').filter({ hasText: `${alice.username} is typing` }).waitFor()

  log('A sends an emoji and an @mention, with a second line (Shift+Enter); Enter sends')
  await byTestId(pageA, 'chat-input').pressSequentially(text.slice(12))
  await byTestId(pageA, 'chat-input').press('Shift+Enter')
  await byTestId(pageA, 'chat-input').pressSequentially('second line')
  await byTestId(pageA, 'chat-input').press('Enter')
  assert.equal(await byTestId(pageA, 'chat-input').inputValue(), '', 'the composer is emptied')

  log('B sees it, with the mention highlighted and the line break kept')
  const onB = byTestId(pageB, 'chat-message').filter({ hasText: '🎨' })
  await onB.waitFor()
  assert.equal(await onB.getAttribute('data-author'), alice.username)
  assert.equal(await onB.getByTestId('chat-message-text').innerText(), `${text}\nsecond line`)
  assert.equal(await onB.getByTestId('chat-mention').innerText(), `@${bob.username}`)
  assert.ok(await onB.getByTestId('chat-mention').evaluate((el) => el.classList.contains('is-me')), 'a mention of me stands out')
  // The message ends A's typing at once.
  await pageB.waitForFunction(() => document.querySelector('[data-testid="chat-typing"]')?.textContent === '')
  await byTestId(pageA, 'chat-message').filter({ hasText: '🎨' }).waitFor()

  log('markup in a message is shown as text')
  await send(pageA, '<b>bold?</b> <img src=x onerror=alert(1)>')
  await byTestId(pageB, 'chat-message-text').filter({ hasText: '<b>bold?</b>' }).waitFor()
  assert.equal(await byTestId(pageB, 'chat-messages').locator('b, img[src="x"]').count(), 0)

  log('B reloads the page: the history is there')
  await pageB.reload()
  await pageB.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
  await byTestId(pageB, 'chat-message').filter({ hasText: '🎨' }).waitFor()
  assert.equal((await messageIds(pageB)).length, 2)

  log('A edits the message; B sees the new text marked as edited')
  const mine = byTestId(pageA, 'chat-message').filter({ hasText: '🎨' })
  await mine.hover()
  await mine.getByTestId('chat-message-edit').click()
  await byTestId(pageA, 'chat-edit-input').fill(`${text} (typo fixed)`)
  await byTestId(pageA, 'chat-edit-input').press('Enter')
  const editedOnB = byTestId(pageB, 'chat-message').filter({ hasText: 'typo fixed' })
  await editedOnB.getByTestId('chat-message-edited').waitFor()

  log('A deletes the markup message after confirming; it goes away for B')
  const markup = byTestId(pageA, 'chat-message').filter({ hasText: 'bold?' })
  await markup.hover()
  await markup.getByTestId('chat-message-delete').click()
  await pageA.locator('.el-message-box').getByRole('button', { name: 'Delete' }).click()
  await byTestId(pageB, 'chat-message').filter({ hasText: 'bold?' }).waitFor({ state: 'detached' })
  assert.equal(await byTestId(pageB, 'chat-message-edit').count(), 0, 'B may not edit A’s message')

  log('a signed-out visitor reads the room but has to log in to write')
  const guest = await freshContext(browser)
  const guestPage = await guest.newPage()
  await openRoom(guestPage, room)
  await byTestId(guestPage, 'chat-message').filter({ hasText: 'typo fixed' }).waitFor()
  await byTestId(guestPage, 'chat-login-link').waitFor()
  assert.ok(await byTestId(guestPage, 'chat-input').isDisabled(), 'the composer is disabled')
  await guest.close()

  log('B goes offline; A sends 3 messages meanwhile')
  await contextB.setOffline(true)
  await byTestId(pageB, 'chat-banner-reconnecting').waitFor()
  const missed = ['missed one', 'missed two', 'missed three']
  for (const line of missed) await send(pageA, line)
  assert.equal(await byTestId(pageB, 'chat-message').filter({ hasText: 'missed' }).count(), 0, 'B is really offline')

  log('B comes back online: the 3 missed messages are filled in, in order, once each')
  await contextB.setOffline(false)
  await byTestId(pageB, 'chat-banner-filled').filter({ hasText: '3 messages' }).waitFor()
  await byTestId(pageB, 'chat-message').filter({ hasText: 'missed three' }).waitFor()
  const texts = await messageTexts(pageB)
  assert.deepEqual(texts.slice(-3), missed, 'the missed messages, in order')
  assert.equal(texts.length, 4, `no duplicates: ${JSON.stringify(texts)}`)
  const ids = await messageIds(pageB)
  assert.equal(new Set(ids).size, ids.length, 'each message id once')

  log('B answers; A sees it')
  await send(pageB, `Thanks @${alice.username}!`)
  await byTestId(pageA, 'chat-message').filter({ hasText: 'Thanks' }).waitFor()

  log('B logs out: the socket reconnects as a guest that still reads the room, and B leaves the presence list')
  await logoutViaUi(pageB)
  await byTestId(pageB, 'chat-login-hint').waitFor()
  await pageA.locator(`[data-testid="chat-presence-user"][data-username="${bob.username}"]`).waitFor({ state: 'detached' })
  await pageB.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
  await send(pageA, 'still there?')
  await byTestId(pageB, 'chat-message').filter({ hasText: 'still there?' }).waitFor()

  log('B logs in from the chat: back in the room, writing as B (the socket reconnected with the new cookie)')
  await byTestId(pageB, 'chat-login-link').click()
  await byTestId(pageB, 'login-username').fill(bob.username)
  await byTestId(pageB, 'login-password').fill(bob.password)
  await byTestId(pageB, 'login-password').press('Enter')
  await pageB.waitForURL(`**/rooms/${room}`)
  await pageA.locator(`[data-testid="chat-presence-user"][data-username="${bob.username}"]`).waitFor()
  await send(pageB, 'back again')
  await byTestId(pageA, 'chat-message').filter({ hasText: 'back again' }).waitFor()

  log('a message over 2000 characters cannot be sent')
  await byTestId(pageA, 'chat-input').fill('x'.repeat(2001))
  await byTestId(pageA, 'chat-counter').filter({ hasText: '2001 / 2000' }).waitFor()
  assert.ok(await byTestId(pageA, 'chat-send').isDisabled(), 'send is disabled')
  await byTestId(pageA, 'chat-input').fill('🎨'.repeat(2000)) // the server counts characters, not UTF-16 units
  assert.ok(await byTestId(pageA, 'chat-send').isEnabled(), '2000 emoji are 2000 characters')
  await byTestId(pageA, 'chat-input').fill('')

  log('sending too fast: the server refuses with rate_limited and the wait is shown inline')
  const error = byTestId(pageA, 'chat-error')
  for (let i = 1; i <= 30 && !(await error.isVisible()); i++) {
    await byTestId(pageA, 'chat-input').fill(`flood ${i}`)
    await byTestId(pageA, 'chat-input').press('Enter')
    await Promise.race([
      byTestId(pageA, 'chat-pending').filter({ hasText: `flood ${i}` }).waitFor({ state: 'detached' }),
      error.waitFor(),
    ])
  }
  assert.match(await error.innerText(), /sending messages too fast\. Try again in \d+ s\./)
  const failed = pageA.locator('[data-testid="chat-pending"][data-status="failed"]')
  await failed.getByTestId('chat-pending-retry').waitFor()
  await failed.getByTestId('chat-pending-discard').click()
  await failed.waitFor({ state: 'detached' })

  assert.deepEqual(errorsB, [], 'no page errors in B')
})
