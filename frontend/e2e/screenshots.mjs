// Not a test: saves screenshots of the main pages in light/dark and English/Chinese for a visual check.
//   VA_BASE_URL=http://127.0.0.1:8888 VA_E2E_ARTIFACTS=/tmp/shots node e2e/screenshots.mjs

import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { byTestId, freshContext, launch, makePng, registerViaUi } from './lib.mjs'

const out = process.env.VA_E2E_ARTIFACTS || 'screenshots'
mkdirSync(out, { recursive: true })

const browser = await launch()
try {
  // One account with a filled-in profile, shared by every variant through its cookies.
  const setup = await freshContext(browser)
  const page = await setup.newPage()
  const account = await registerViaUi(page)
  await page.goto('/settings/profile')
  await byTestId(page, 'profile-display-name').fill('星河画师 Stellar')
  await byTestId(page, 'profile-bio').fill('用 AI 画星空。\nPainting night skies with diffusion models.')
  await byTestId(page, 'profile-avatar-input').setInputFiles({ name: 'a.png', mimeType: 'image/png', buffer: makePng(64, 64) })
  await byTestId(page, 'header-avatar').locator('img').waitFor()
  await byTestId(page, 'profile-save').click()
  await page.locator('.el-message--success').last().waitFor()
  await byTestId(page, 'token-name').fill('my-laptop')
  await byTestId(page, 'token-create').click()
  await byTestId(page, 'token-secret').waitFor()
  const state = await setup.storageState()

  // A conversation in a room, with a second person who stays there (presence) and types.
  const room = `studio-${Date.now().toString(36)}`
  const friendContext = await freshContext(browser)
  const friend = await friendContext.newPage()
  await registerViaUi(friend)
  await friend.goto('/settings/profile')
  await byTestId(friend, 'profile-display-name').fill('Mira Chen')
  await byTestId(friend, 'profile-save').click()
  await friend.locator('.el-message--success').last().waitFor()
  const say = async (who, text) => {
    await byTestId(who, 'chat-input').fill(text)
    await byTestId(who, 'chat-input').press('Enter')
    await byTestId(who, 'chat-message-text').filter({ hasText: text.split('\n')[0] }).first().waitFor()
  }
  await page.goto(`/rooms/${room}`)
  await friend.goto(`/rooms/${room}`)
  await byTestId(friend, 'chat-empty').waitFor()
  await friend.screenshot({ path: join(out, 'rooms-empty.png') })
  await say(friend, 'Morning! Anyone tried the new SDXL checkpoint yet? 🌄')
  await say(page, `Yes — rendered a nebula at 40 steps.\nThe detail in the dust lanes is unreal ✨`)
  await say(page, 'Prompt: "a violet nebula over a quiet lake, long exposure"')
  await say(friend, `Wow, share it in the gallery later? @${account.username}`)
  await say(friend, '用中文提示词也可以吗？')
  await say(page, '可以，效果还不错 👍')

  const variants = [
    { name: 'en-light', locale: 'en-US', colorScheme: 'light' },
    { name: 'en-dark', locale: 'en-US', colorScheme: 'dark' },
    { name: 'zh-light', locale: 'zh-CN', colorScheme: 'light' },
    { name: 'zh-dark', locale: 'zh-CN', colorScheme: 'dark' },
  ]
  for (const variant of variants) {
    const guest = await freshContext(browser, variant)
    const guestPage = await guest.newPage()
    for (const path of ['/login', '/register']) {
      await guestPage.goto(path)
      await guestPage.getByTestId(`${path.slice(1)}-submit`).click() // show the field validation
      await guestPage.waitForTimeout(300)
      await guestPage.screenshot({ path: join(out, `${path.slice(1)}-${variant.name}.png`) })
    }
    await guest.close()

    const member = await browser.newContext({
      baseURL: process.env.VA_BASE_URL, locale: variant.locale, colorScheme: variant.colorScheme,
      viewport: { width: 1280, height: 860 }, storageState: state,
    })
    const memberPage = await member.newPage()
    await memberPage.goto('/')
    await byTestId(memberPage, 'header-user').click()
    await byTestId(memberPage, 'header-logout').waitFor()
    await memberPage.waitForTimeout(300)
    await memberPage.screenshot({ path: join(out, `home-${variant.name}.png`) })
    await memberPage.goto('/settings/profile')
    await byTestId(memberPage, 'token-table').locator('tbody tr').first().waitFor()
    await memberPage.screenshot({ path: join(out, `profile-${variant.name}.png`), fullPage: true })
    await memberPage.goto(`/u/${account.username}`)
    await byTestId(memberPage, 'user-display-name').waitFor()
    await memberPage.screenshot({ path: join(out, `user-${variant.name}.png`) })
    await memberPage.goto(`/rooms/${room}`)
    await memberPage.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
    await byTestId(friend, 'chat-input').pressSequentially('typing', { delay: 10 })
    await byTestId(memberPage, 'chat-typing').filter({ hasText: /\S/ }).waitFor()
    await byTestId(friend, 'chat-input').fill('')
    await memberPage.screenshot({ path: join(out, `rooms-${variant.name}.png`) })
    await member.close()
  }
  // A phone, and a signed-out reader.
  const phone = await browser.newContext({
    baseURL: process.env.VA_BASE_URL, viewport: { width: 390, height: 760 }, storageState: state,
  })
  const phonePage = await phone.newPage()
  await phonePage.goto(`/rooms/${room}`)
  await byTestId(phonePage, 'chat-message').first().waitFor()
  await phonePage.screenshot({ path: join(out, 'rooms-phone.png') })
  await phone.close()
  const guest = await freshContext(browser)
  const guestPage = await guest.newPage()
  await guestPage.goto(`/rooms/${room}`)
  await byTestId(guestPage, 'chat-login-hint').waitFor()
  await byTestId(guestPage, 'chat-message').first().waitFor()
  await guestPage.screenshot({ path: join(out, 'rooms-guest.png') })
  await guest.close()
  await friendContext.close()
  await setup.close()
  console.log(`screenshots in ${out}`)
} finally {
  await browser.close()
}
