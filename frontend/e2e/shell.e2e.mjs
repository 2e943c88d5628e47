// The app shell around the auth pages: language switch (remembered), live dark mode, API tokens
// (secret shown once, revoke with confirm), password change, the 404 page, and how failures read:
// no answer at all (offline) and the server's real log-in rate limit. Nothing is stubbed.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/shell.e2e.mjs

import { assert, byTestId, loginViaUi, logoutViaUi, randomPassword, randomUsername, registerViaUi, runE2E, toast } from './lib.mjs'

await runE2E('shell', async ({ context, page, log }) => {
  const account = await registerViaUi(page)

  log('dark mode follows the system setting, live')
  const isDark = () => page.evaluate(() => document.documentElement.classList.contains('dark'))
  assert.equal(await isDark(), false)
  await page.emulateMedia({ colorScheme: 'dark' })
  await page.waitForFunction(() => document.documentElement.classList.contains('dark'))
  await page.emulateMedia({ colorScheme: 'light' })
  await page.waitForFunction(() => !document.documentElement.classList.contains('dark'))

  log('switch the language to Chinese from the header; it is remembered after a reload')
  await byTestId(page, 'lang-switch').hover()
  await page.locator('.el-popper', { hasText: 'Language' }).waitFor()
  await byTestId(page, 'lang-switch').click()
  await byTestId(page, 'lang-zh-CN').click()
  await page.waitForFunction(() => document.documentElement.lang === 'zh-CN')
  assert.match(await byTestId(page, 'nav-home').textContent(), /首页/)
  await page.reload()
  await byTestId(page, 'nav-home').waitFor()
  assert.match(await byTestId(page, 'nav-home').textContent(), /首页/)
  await byTestId(page, 'lang-switch').click()
  await byTestId(page, 'lang-en').click()
  await page.waitForFunction(() => document.documentElement.lang === 'en')

  log('create an API token: its secret is shown once, and works as a bearer token')
  await page.goto('/settings/profile')
  await byTestId(page, 'token-name').fill('e2e laptop')
  await byTestId(page, 'token-name').press('Enter')
  const secret = await byTestId(page, 'token-secret').inputValue()
  assert.ok(secret.length >= 16, `a token secret is shown (got ${JSON.stringify(secret)})`)
  const me = await page.request.get('/api/me', { headers: { Authorization: `Bearer ${secret}` } })
  assert.equal(me.status(), 200, 'the new token authenticates')
  await byTestId(page, 'token-dialog-done').click()
  await byTestId(page, 'token-secret').waitFor({ state: 'hidden' })
  const rows = byTestId(page, 'token-table').locator('tbody tr')
  await rows.filter({ hasText: 'e2e laptop' }).waitFor()
  assert.ok(!(await page.content()).includes(secret), 'the secret is gone from the page once the dialog closes')

  log('revoke it, confirming first')
  await rows.filter({ hasText: 'e2e laptop' }).locator('[data-testid^="token-revoke-"]').click()
  await page.locator('.el-message-box').getByRole('button', { name: 'Revoke' }).click()
  await toast(page, 'success').filter({ hasText: 'Token revoked' }).waitFor()
  await rows.filter({ hasText: 'e2e laptop' }).waitFor({ state: 'detached' })
  const after = await page.request.get('/api/me', { headers: { Authorization: `Bearer ${secret}` } })
  assert.equal(after.status(), 401, 'a revoked token no longer authenticates')

  log('change the password: a wrong current password is refused, then the change works')
  const newPassword = randomPassword()
  await byTestId(page, 'password-current').fill('not-my-password')
  await byTestId(page, 'password-new').fill(newPassword)
  await byTestId(page, 'password-confirm').fill(newPassword)
  await byTestId(page, 'password-submit').click()
  await byTestId(page, 'password-error').waitFor()
  await byTestId(page, 'password-current').fill(account.password)
  await byTestId(page, 'password-submit').click()
  await toast(page, 'success').filter({ hasText: 'Password changed' }).waitFor()
  await logoutViaUi(page)
  await loginViaUi(page, { username: account.username, password: newPassword })

  log('an unknown page and an unknown user')
  await page.goto('/no/such/page')
  await byTestId(page, 'not-found').waitFor()
  await page.goto('/u/nobody_by_this_name')
  await byTestId(page, 'user-not-found').waitFor()

  log('no answer at all (the browser is offline): a generic message, not a crash')
  await logoutViaUi(page)
  await page.goto('/login')
  await context.setOffline(true)
  await byTestId(page, 'login-username').fill(account.username)
  await byTestId(page, 'login-password').fill('whatever-password')
  await byTestId(page, 'login-password').press('Enter')
  await byTestId(page, 'login-error').filter({ hasText: 'could not be reached' }).waitFor()
  await context.setOffline(false)

  // The real limiter, not a stubbed answer: the server allows 10 failed log-ins per account per
  // window, so the 11th attempt on a throwaway account is refused with 429 and a Retry-After.
  log('a real rate limit: failed log-ins on one account until the server answers 429')
  await byTestId(page, 'login-username').fill(randomUsername('locked'))
  let limited = null
  for (let attempt = 1; attempt <= 12 && !limited; attempt++) {
    await byTestId(page, 'login-password').fill(`wrong-password-${attempt}`)
    const [response] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/api/auth/login' && r.request().method() === 'POST'),
      byTestId(page, 'login-password').press('Enter'),
    ])
    if (response.status() === 429) limited = { attempt, retryAfter: Number(response.headers()['retry-after']) }
    else assert.equal(response.status(), 401, `attempt ${attempt} is a wrong password`)
  }
  assert.ok(limited, 'the server rate-limits repeated failures')
  assert.equal(limited.attempt, 11, 'after 10 failures')
  assert.ok(limited.retryAfter > 0, 'with a Retry-After header')
  // Said once, in words (Retry-After is 900 s: "15 minutes"), and the password is still there to retry with.
  const minutes = Math.ceil(limited.retryAfter / 60)
  const said = `Too many failed log-ins for this account; try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`
  await byTestId(page, 'login-error').filter({ hasText: said }).waitFor()
  const shown = (await byTestId(page, 'login-error').textContent()).trim()
  assert.equal((shown.match(/try again/gi) ?? []).length, 1, `said once: ${shown}`)
  assert.doesNotMatch(shown, /\d+ s\b/, `no bare seconds: ${shown}`)
  assert.equal(await byTestId(page, 'login-password').inputValue(), 'wrong-password-11', 'the password field is kept')
})
