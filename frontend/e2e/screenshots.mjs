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
  await setup.close()

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
    await member.close()
  }
  console.log(`screenshots in ${out}`)
} finally {
  await browser.close()
}
