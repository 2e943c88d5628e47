// `/stylize <style>` with a photo in a chat room: the room's owner allows photos (the attach button appears for
// everyone in the room at once), B types the command, attaches a file that is not a photo (a clear error, the
// typed text kept), then a photo, types the start of the style again and picks it from the offered presets with
// the keyboard, and sends; A, in another browser, sees the job render live and finish with Remix and Download, and
// B (the sender) may publish it.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/room-stylize.e2e.mjs   (the demo model, ControlNet and preset needed)

import { randomBytes } from 'node:crypto'
import { assert, byTestId, freshContext, makePng, randomUsername, registerViaUi, runE2E } from './lib.mjs'

const RENDER_TIMEOUT_MS = 45_000
const STYLE = 'demo-lines'
const SUBJECT = 'a harbour'
const COMMAND = `/stylize ${STYLE} ${SUBJECT}`

/** Opens the room and waits until the page is subscribed to it (it is then listed as present). */
async function openRoom(page, room, username) {
  await page.goto(`/rooms/${room}`)
  await byTestId(page, 'chat-panel').waitFor()
  await page.locator(`[data-testid="chat-presence-user"][data-username="${username}"]`).waitFor()
}

await runE2E('room-stylize', async ({ browser, page: pageA, log }) => {
  const room = `stylize-${randomBytes(4).toString('hex')}`
  const contextB = await freshContext(browser)
  const pageB = await contextB.newPage()

  log('A and B register; A opens the room (and so owns it), B joins')
  const [alice, bob] = [randomUsername('alice'), randomUsername('bob')]
  await Promise.all([registerViaUi(pageA, { username: alice }), registerViaUi(pageB, { username: bob })])
  await openRoom(pageA, room, alice)
  await byTestId(pageA, 'chat-input').fill('welcome')
  await byTestId(pageA, 'chat-input').press('Enter')
  await byTestId(pageA, 'chat-pending').waitFor({ state: 'detached' })
  await openRoom(pageB, room, bob)
  await pageB.getByText('welcome').first().waitFor()
  assert.equal(await byTestId(pageB, 'chat-attach').count(), 0, 'no photos until the owner allows them')

  log('A allows photos; B gets the attach button at once')
  await byTestId(pageA, 'chat-uploads-switch').click()
  await byTestId(pageA, 'chat-attach').waitFor()
  const attach = byTestId(pageB, 'chat-attach')
  await attach.waitFor()
  assert.ok(await attach.getAttribute('aria-label'), 'the button is named for screen readers')

  log('B types the command and attaches a file that is not a photo: a clear error, the text kept')
  await byTestId(pageB, 'chat-input').fill(COMMAND)
  await byTestId(pageB, 'chat-photo-input').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a photo') })
  const error = byTestId(pageB, 'chat-photo-error')
  await error.waitFor()
  assert.match(await error.innerText(), /not an image/i)
  assert.equal(await byTestId(pageB, 'chat-input').inputValue(), COMMAND)

  log('B attaches a photo with the keyboard-reachable button and sends')
  const photo = makePng(96, 64, (x, y) => [x * 2, 120 + y, (x * y) & 255])
  const [chooser] = await Promise.all([pageB.waitForEvent('filechooser'), attach.press('Enter')])
  await chooser.setFiles({ name: 'harbour.png', mimeType: 'image/png', buffer: photo })
  await byTestId(pageB, 'chat-photo-attached').waitFor()
  assert.equal(await byTestId(pageB, 'chat-input').inputValue(), COMMAND, 'the typed text stays')

  log('B types the start of the style again: the presets are offered, and one is picked with the keyboard')
  const input = byTestId(pageB, 'chat-input')
  await input.fill('')
  await input.pressSequentially(`/stylize ${STYLE.slice(0, 3)}`)
  const option = pageB.locator(`[data-testid="style-option"][data-value="${STYLE}"]`)
  await option.waitFor()
  assert.ok(await byTestId(pageB, 'style-list').getAttribute('aria-label'), 'the list is named for screen readers')
  assert.ok((await option.innerText()).includes(STYLE), 'the option shows the preset name beside its title')
  const selected = pageB.locator('[data-testid="style-option"][aria-selected="true"]')
  for (let i = 0; i < 8 && (await selected.getAttribute('data-value')) !== STYLE; i++) await input.press('ArrowDown')
  assert.equal(await input.getAttribute('aria-activedescendant'), await option.getAttribute('id'))
  await input.press('Enter')
  assert.equal(await input.inputValue(), `/stylize ${STYLE} `, 'the full name and a space')
  assert.equal(await byTestId(pageB, 'style-list').count(), 0, 'the list closes once a style is chosen')
  await input.pressSequentially(SUBJECT)
  assert.equal(await input.inputValue(), COMMAND)
  await input.press('Enter')

  log('A sees the job message render live, then the image with Remix and Download')
  await byTestId(pageA, 'chat-job').waitFor({ timeout: RENDER_TIMEOUT_MS })
  // 40 steps of the tiny model: frames for a few seconds before the image.
  await byTestId(pageA, 'chat-job-preview').waitFor({ timeout: RENDER_TIMEOUT_MS })
  log(`A's first frame: step ${await byTestId(pageA, 'chat-job').getAttribute('data-preview-step')}`)
  for (const page of [pageA, pageB]) {
    await byTestId(page, 'chat-job-image').waitFor({ timeout: RENDER_TIMEOUT_MS })
    await byTestId(page, 'chat-job-remix').waitFor()
    await byTestId(page, 'chat-job-download').waitFor()
  }
  assert.equal(await byTestId(pageA, 'chat-job').getAttribute('data-job'), await byTestId(pageB, 'chat-job').getAttribute('data-job'))
  await byTestId(pageB, 'chat-job-publish').waitFor()
  assert.equal(await byTestId(pageA, 'chat-job-publish').count(), 0, 'only the sender publishes')
  assert.equal(await byTestId(pageB, 'chat-photo-attached').count(), 0, 'the photo went with the message')
}, { timeoutMs: 90_000 })
