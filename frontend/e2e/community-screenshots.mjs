// Not a test: screenshots of the community pages for a visual check — the gallery, an artwork with
// its room, the publish dialog, the bell, a profile, the report dialog and (with VA_MOD_USER /
// VA_MOD_PASSWORD) the moderators' queue, in light and dark, English and 简体中文, desktop and phone.
//   VA_BASE_URL=… VA_E2E_ARTIFACTS=/tmp/shots node e2e/community-screenshots.mjs   (needs `run.py demo-model`)

import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { ARTIFACTS, byTestId, freshContext, launch, loginViaUi, randomUsername, registerViaUi } from './lib.mjs'
import { generate, publish } from './community-lib.mjs'

const out = ARTIFACTS || '/tmp/va-community-shots'
mkdirSync(out, { recursive: true })
const shot = (page, name) => page.screenshot({ path: join(out, `${name}.png`), fullPage: false })
const run = randomBytes(2).toString('hex')

const browser = await launch()
try {
  const a = await (await freshContext(browser)).newPage()
  const alice = await registerViaUi(a, { username: randomUsername('alice') })
  const posts = []
  for (const [n, nsfw] of [[1, false], [2, true], [3, false]]) {
    await generate(a, { prompt: `a lighthouse at dusk, number ${n} ${run}`, seed: 100 + n, batch: n === 1 ? 3 : 1 })
    await byTestId(a, 'gen-publish').click()
    if (n === 1) {
      await byTestId(a, 'publish-title').fill(`Lighthouse ${n}`)
      await shot(a, 'publish-dialog')
    }
    posts.push(await publish(a, { title: `Lighthouse ${n}`, description: 'Warm light,\nlong exposure.', tags: ['sea', 'dusk'], nsfw }))
  }

  for (const [scheme, locale, viewport, tag] of [
    ['light', 'en-US', undefined, 'light-en'],
    ['dark', 'zh-CN', undefined, 'dark-zh'],
    ['dark', 'en-US', { width: 390, height: 844 }, 'dark-phone'],
  ]) {
    const context = await freshContext(browser, { colorScheme: scheme, locale, viewport })
    const b = await context.newPage()
    await registerViaUi(b, { username: randomUsername('bob') })
    await b.goto('/gallery')
    await byTestId(b, 'post-card').first().waitFor()
    await b.waitForTimeout(400)
    await shot(b, `gallery-${tag}`)
    await b.goto(`/p/${posts[0]}`)
    await b.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
    await byTestId(b, 'like-button').click()
    await byTestId(b, 'chat-input').fill(`@${alice.username} how many steps?`)
    await byTestId(b, 'chat-input').press('Enter')
    await b.waitForTimeout(400)
    await shot(b, `post-${tag}`)
    await b.goto(`/u/${alice.username}`)
    await byTestId(b, 'post-card').first().waitFor()
    await b.waitForTimeout(300)
    await shot(b, `profile-${tag}`)
    if (tag === 'light-en') {
      await b.goto(`/p/${posts[0]}`)
      await byTestId(b, 'post-report').click()
      await byTestId(b, 'report-submit').waitFor()
      await b.waitForTimeout(300)
      await shot(b, 'report-dialog')
    }
    await context.close()
  }

  await a.goto(`/p/${posts[0]}`)
  await byTestId(a, 'notif-bell').click()
  await byTestId(a, 'notif-item').first().waitFor()
  await a.waitForTimeout(300)
  await shot(a, 'bell-open')

  if (process.env.VA_MOD_USER) {
    const m = await (await freshContext(browser, { colorScheme: 'dark' })).newPage()
    await loginViaUi(m, { username: process.env.VA_MOD_USER, password: process.env.VA_MOD_PASSWORD })
    await m.goto('/moderation')
    await byTestId(m, 'moderation-item').first().waitFor().catch(() => {})
    await shot(m, 'moderation-dark')
  }
  console.log(`screenshots in ${out}`)
} finally {
  await browser.close()
}
