// Issue 19, item 4 and smaller first-visit items, on a phone (390×844) and a desktop:
//  - a stranger who opens Generate is sent to log in and told why;
//  - a new account is welcomed, not "welcomed back"; a username's underscore is not clipped in the header;
//  - phone: a menu button opens a drawer with every section (no squeezed strip), the page does not scroll
//    sideways, and on Generate the prompt comes first, within the first screen.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/phone.e2e.mjs

import { assert, byTestId, freshContext, randomUsername, registerViaUi, runE2E } from './lib.mjs'

const PHONE = { width: 390, height: 844 }
const SECTIONS = ['home', 'gallery', 'generate', 'models', 'rooms', 'stylize', 'studio', 'collab']

await runE2E('phone', async ({ browser, page, log }) => {
  log('a stranger sent to log in from Generate is told why')
  await page.goto('/generate')
  await page.waitForURL((url) => url.pathname === '/login')
  await byTestId(page, 'login-why').waitFor()
  assert.match(await byTestId(page, 'login-why').innerText(), /Generate/)

  log('a new account: "Welcome", not "Welcome back"; the underscore of its name is not clipped')
  const account = await registerViaUi(page, { username: randomUsername('ana_lee') })
  await page.goto('/')
  const title = await byTestId(page, 'home-title').innerText()
  assert.doesNotMatch(title, /back/i, title)
  const clipped = await byTestId(page, 'header-display-name').evaluate((el) => {
    const range = document.createRange()
    range.selectNodeContents(el)
    const text = range.getBoundingClientRect()
    const box = el.getBoundingClientRect()
    return text.bottom > box.bottom + 0.5 // the glyphs' box reaches below the clipping box
  })
  assert.equal(clipped, false, 'the name (with its underscore) fits its box')
  const state = await page.context().storageState()

  log('phone: the menu opens a drawer with every section')
  const phone = await freshContext(browser, { viewport: PHONE })
  await phone.addCookies(state.cookies)
  const p = await phone.newPage()
  await p.goto('/')
  await byTestId(p, 'nav-menu').waitFor()
  assert.equal(await byTestId(p, 'nav-gallery').isVisible(), false, 'no squeezed strip of links')
  assert.ok(await p.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'nothing scrolls sideways')
  await byTestId(p, 'nav-menu').click()
  // The drawer slides in: wait until it is in place.
  await p.waitForFunction(() => (document.querySelector('[data-testid="drawer-nav-home"]')?.getBoundingClientRect().x ?? -1) >= 0)
  for (const section of SECTIONS) {
    await byTestId(p, `drawer-nav-${section}`).waitFor()
    const box = await byTestId(p, `drawer-nav-${section}`).boundingBox()
    assert.ok(box && box.x >= 0 && box.y >= 0 && box.y + box.height <= PHONE.height && box.width > 150,
      `${section} is a full-width entry on the screen: ${JSON.stringify(box)}`)
  }
  await byTestId(p, 'drawer-nav-generate').click()
  await p.waitForURL('**/generate')
  await byTestId(p, 'nav-drawer').waitFor({ state: 'hidden' })

  log('phone: on Generate the prompt comes first, on the first screen')
  const prompt = await byTestId(p, 'gen-prompt').boundingBox()
  assert.ok(prompt && prompt.y + prompt.height < PHONE.height, `the prompt is on the first screen (y=${prompt?.y})`)
  const stage = await byTestId(p, 'gen-status').boundingBox()
  assert.ok(stage && stage.y > prompt.y, 'the picture comes after the prompt')

  log('phone: the chat box\'s hint is whole, not cut ("Shift+Enter for…")')
  await p.goto('/rooms/lobby')
  await byTestId(p, 'chat-input').waitFor()
  const hint = p.locator('.chat-composer__hint')
  assert.equal(await hint.evaluate((el) => el.scrollWidth <= el.clientWidth && el.scrollHeight <= el.clientHeight + 1), true)
  assert.match(await hint.innerText(), /Shift\+Enter for a new line/)
  void account
})
