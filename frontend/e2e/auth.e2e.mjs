// Sign-up to sign-in, as a person would: register, edit the profile (name, bio, avatar),
// log out, fail to log in once, log in with Enter, and find everything kept (also after a reload).
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/auth.e2e.mjs

import {
  assert, byTestId, headerMenu, loginViaUi, logoutViaUi, makePng, randomUsername, randomPassword,
  registerViaUi, runE2E, toast,
} from './lib.mjs'

const DISPLAY_NAME = '星河画师 Stellar'
const BIO = '用 AI 画星空。\nPainting night skies with diffusion models.'

await runE2E('auth', async ({ page, log }) => {
  const account = { username: randomUsername('e2e_auth'), password: randomPassword() }

  log('register', account.username)
  await registerViaUi(page, account)
  assert.equal(new URL(page.url()).pathname, '/', 'after registering we land on the home page')
  assert.equal((await byTestId(page, 'header-display-name').textContent()).trim(), account.username,
    'the header shows the new user (display name starts as the username)')

  log('open profile settings from the header menu')
  await headerMenu(page, 'header-settings')
  await page.waitForURL('**/settings/profile')

  log('upload a file that is not an image: the server refuses it and we show why')
  await byTestId(page, 'profile-avatar-input').setInputFiles({
    name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('certainly not a PNG'),
  })
  await byTestId(page, 'profile-avatar-error').waitFor()
  assert.ok((await byTestId(page, 'profile-avatar-error').textContent()).trim().length > 0, 'the avatar error says something')

  log('edit display name and bio, upload a real avatar, save')
  await byTestId(page, 'profile-display-name').fill(DISPLAY_NAME)
  await byTestId(page, 'profile-bio').fill(BIO)
  await byTestId(page, 'profile-avatar-input').setInputFiles({
    name: 'avatar.png', mimeType: 'image/png', buffer: makePng(64, 64),
  })
  const headerAvatarImg = byTestId(page, 'header-avatar').locator('img')
  await headerAvatarImg.waitFor()
  assert.match(await headerAvatarImg.getAttribute('src'), /\/api\/users\/[a-z0-9_]+\/avatar/, 'header shows the uploaded avatar')
  await page.waitForFunction(
    () => document.querySelector('[data-testid="header-avatar"] img')?.naturalWidth > 0,
    undefined, { timeout: 10_000 },
  )
  // The avatar upload must not have thrown away the unsaved edits.
  assert.equal(await byTestId(page, 'profile-display-name').inputValue(), DISPLAY_NAME)
  await byTestId(page, 'profile-save').click()
  await toast(page, 'success').filter({ hasText: 'Profile saved' }).waitFor()
  await page.waitForFunction(
    (name) => document.querySelector('[data-testid="header-display-name"]')?.textContent?.trim() === name,
    DISPLAY_NAME, { timeout: 10_000 },
  )

  log('log out')
  await logoutViaUi(page)
  assert.equal(await byTestId(page, 'header-user').count(), 0, 'the header no longer shows a user')

  log('a wrong password is refused with the server message')
  await byTestId(page, 'header-login').click()
  await page.waitForURL('**/login**')
  await byTestId(page, 'login-username').fill(account.username)
  await byTestId(page, 'login-password').fill(`${account.password}-wrong`)
  await byTestId(page, 'login-password').press('Enter')
  await byTestId(page, 'login-error').waitFor()
  assert.match(await byTestId(page, 'login-error').textContent(), /wrong|invalid|incorrect/i)
  assert.equal(await byTestId(page, 'login-password').inputValue(), `${account.password}-wrong`,
    'the password field keeps what was typed (no retyping after a typo in the name)')

  log('log in again (Enter in the password field)')
  await loginViaUi(page, account)
  assert.equal((await byTestId(page, 'header-display-name').textContent()).trim(), DISPLAY_NAME)

  log('the profile kept its values, also after a reload')
  await page.goto('/settings/profile')
  for (const pass of ['navigated', 'reloaded']) {
    await byTestId(page, 'profile-display-name').waitFor()
    assert.equal(await byTestId(page, 'profile-display-name').inputValue(), DISPLAY_NAME, `display name (${pass})`)
    assert.equal(await byTestId(page, 'profile-bio').inputValue(), BIO, `bio (${pass})`)
    assert.match(await byTestId(page, 'profile-avatar').locator('img').getAttribute('src'), /\/avatar/, `avatar (${pass})`)
    if (pass === 'navigated') await page.reload()
  }

  log('the public profile shows them too')
  await page.goto(`/u/${account.username}`)
  await byTestId(page, 'user-display-name').waitFor()
  assert.match(await byTestId(page, 'user-display-name').textContent(), new RegExp(DISPLAY_NAME))
  assert.equal((await byTestId(page, 'user-bio').textContent()).trim(), BIO)

  log('a page that needs sign-in sends a signed-out visitor to log in, and back afterwards')
  await logoutViaUi(page)
  await page.goto('/settings/profile')
  await page.waitForURL((url) => url.pathname === '/login' && url.searchParams.get('next') === '/settings/profile')
  await loginViaUi(page, account)
  await page.waitForURL((url) => url.pathname === '/settings/profile')
  await byTestId(page, 'profile-display-name').waitFor()
})
