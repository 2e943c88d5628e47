// `/imagine <prompt>` in a chat room: two people in one room watch the same render live, a third who
// joins mid-render sees the current preview at once (within 1 s: the server keeps the newest frame; previews come
// only every 2 s here, so waiting for the next one would be too late), a reload continues live, and
// the finished image has Remix, Publish (the sender) and Download. The room's owner turns /imagine off
// and the refusal is clear.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/imagine.e2e.mjs   (a server with imagine_steps=150, imagine_side_px=512, preview_fps=0.5)

import { randomBytes } from 'node:crypto'
import { assert, byTestId, freshContext, randomUsername, registerViaUi, runE2E } from './lib.mjs'

/** Long enough for several previews; the test server renders 150 steps. */
const RENDER_TIMEOUT_MS = 45_000

async function openRoom(page, room) {
  await page.goto(`/rooms/${room}`)
  await byTestId(page, 'chat-panel').waitFor()
  await page.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
}

const previewStep = async (page) => Number(await byTestId(page, 'chat-job').getAttribute('data-preview-step'))

await runE2E('imagine', async ({ browser, page: pageA, log }) => {
  const room = `imagine-${randomBytes(4).toString('hex')}`
  const contextB = await freshContext(browser)
  const pageB = await contextB.newPage()
  const contextC = await freshContext(browser)
  const pageC = await contextC.newPage()

  log('three people register; A and B open the room')
  await Promise.all([
    registerViaUi(pageA, { username: randomUsername('alice') }),
    registerViaUi(pageB, { username: randomUsername('bob') }),
    registerViaUi(pageC, { username: randomUsername('carol') }),
  ])
  await openRoom(pageA, room)
  await openRoom(pageB, room)

  log('A types /imagine; both see the job message render live')
  await byTestId(pageA, 'chat-input').fill('/imagine a lighthouse at dusk, oil painting')
  await byTestId(pageA, 'chat-input').press('Enter')
  for (const page of [pageA, pageB]) {
    await byTestId(page, 'chat-job').waitFor({ timeout: RENDER_TIMEOUT_MS })
    await byTestId(page, 'chat-job-preview').waitFor({ timeout: RENDER_TIMEOUT_MS })
  }
  assert.equal(await byTestId(pageB, 'chat-job').getAttribute('data-phase'), 'running')
  const jobA = await byTestId(pageA, 'chat-job').getAttribute('data-job')
  assert.equal(await byTestId(pageB, 'chat-job').getAttribute('data-job'), jobA, 'the same job on both pages')
  const firstB = await previewStep(pageB)
  await pageB.waitForFunction((step) => Number(document.querySelector('[data-testid="chat-job"]').dataset.previewStep) > step,
    firstB, { timeout: RENDER_TIMEOUT_MS })

  log('C joins mid-render and sees the current preview at once')
  await openRoom(pageC, room)
  await byTestId(pageC, 'chat-job').waitFor()
  const joinedAt = Date.now()
  await byTestId(pageC, 'chat-job-preview').waitFor({ timeout: 1000 })
  log(`C's first frame after ${Date.now() - joinedAt} ms (step ${await previewStep(pageC)})`)
  assert.equal(await byTestId(pageC, 'chat-job').getAttribute('data-phase'), 'running', 'still rendering when C joined')
  assert.ok(await previewStep(pageC) >= firstB, 'C sees the current frame, not an old one')

  log('B reloads mid-render; the message continues live')
  await pageB.reload()
  await byTestId(pageB, 'chat-job').waitFor()
  // A frame at once (or, if it finished meanwhile, the image).
  await pageB.locator('[data-testid="chat-job-preview"], [data-testid="chat-job-image"]').first().waitFor({ timeout: 1000 })
  const afterReload = await previewStep(pageB)
  await pageB.waitForFunction((step) => {
    const el = document.querySelector('[data-testid="chat-job"]')
    return el.dataset.phase === 'done' || Number(el.dataset.previewStep) > step
  }, afterReload, { timeout: RENDER_TIMEOUT_MS })

  log('all three see the finished image; A may publish it, everyone may remix and download')
  for (const page of [pageA, pageB, pageC]) {
    await byTestId(page, 'chat-job-image').waitFor({ timeout: RENDER_TIMEOUT_MS })
    await byTestId(page, 'chat-job-remix').waitFor()
    await byTestId(page, 'chat-job-download').waitFor()
  }
  await byTestId(pageA, 'chat-job-publish').waitFor()
  assert.equal(await byTestId(pageB, 'chat-job-publish').count(), 0, 'only the sender publishes')
  const href = await byTestId(pageB, 'chat-job-download').getAttribute('href')
  const png = await pageB.request.get(href)
  assert.equal(png.status(), 200)
  assert.equal(png.headers()['content-type'], 'image/png')

  log('A (who opened the room) turns /imagine off; B is refused clearly')
  const patched = pageA.waitForResponse((r) => r.url().endsWith(`/api/rooms/${room}`) && r.request().method() === 'PATCH')
  await byTestId(pageA, 'chat-imagine-switch').click()
  assert.equal((await patched).status(), 200)
  // B opened the room before anyone spoke in it; once A's first message made A its owner, B's switch goes.
  await byTestId(pageB, 'chat-imagine-switch').waitFor({ state: 'detached' })
  await byTestId(pageB, 'chat-input').fill('/imagine a cat')
  await byTestId(pageB, 'chat-input').press('Enter')
  await pageB.getByText('/imagine is turned off in this room.').first().waitFor()
}, { timeoutMs: 110_000 })
