// The community between two people in two browser contexts, against the real server and its engine
// (`demo-tiny`): A generates and publishes from the Generate page; B finds it in the gallery (WebP
// thumbnail, lazy), filters by its tag, opens it, likes it and writes in its room; A sees the like
// count, the message and both notifications arrive live (bell badge), opens one, marks all read;
// B remixes it (someone else's image: the form gets its prompt and seed), follows A from the profile
// and sees A's posts under Following; a second publish of the same job is refused; a report twice
// says so; an NSFW post is blurred until B opts in (remembered after a reload); A edits and deletes it.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/community.e2e.mjs   (the server needs `run.py demo-model`)

import { randomBytes } from 'node:crypto'
import { assert, byTestId, freshContext, randomUsername, registerViaUi, runE2E, toast } from './lib.mjs'
import { generate, publish } from './community-lib.mjs'

const badge = (page) => byTestId(page, 'notif-badge').getAttribute('data-count').then(Number)
const waitBadge = (page, n) => page.locator(`[data-testid="notif-badge"][data-count="${n}"]`).waitFor()
const card = (page, id) => page.locator(`[data-testid="post-card"][data-post-id="${id}"]`)

await runE2E('community', async ({ browser, page: pageA, log }) => {
  const run = randomBytes(3).toString('hex')
  const contextB = await freshContext(browser)
  const pageB = await contextB.newPage()
  const errorsB = []
  pageB.on('pageerror', (err) => errorsB.push(String(err)))

  log('register A and B')
  const [alice] = await Promise.all([
    registerViaUi(pageA, { username: randomUsername('alice') }),
    registerViaUi(pageB, { username: randomUsername('bob') }),
  ])
  assert.equal(await badge(pageA), 0, 'no notifications yet')

  log('A generates a 64×64 image and publishes it from the Generate page')
  const prompt = `a lighthouse at dusk ${run}`
  const seed = 424242
  const firstJob = await generate(pageA, { prompt, seed })
  await byTestId(pageA, 'gen-publish').click()
  const title = `Lighthouse ${run}`
  const description = 'Made with <b>demo-tiny</b>\nsecond line'
  const postId = await publish(pageA, { title, description, tags: ['Sea', 'dusk'] })
  assert.equal(await byTestId(pageA, 'post-description').innerText(), description, 'the description is text, not HTML')
  assert.equal(await byTestId(pageA, 'post-description').locator('b').count(), 0)
  assert.deepEqual(await byTestId(pageA, 'post-tag').allInnerTexts(), ['#sea', '#dusk'])
  assert.equal(await pageA.locator('[data-testid="post-setting-prompt"] [data-testid="post-setting-value"]').innerText(), prompt)
  assert.equal(await pageA.locator('[data-testid="post-setting-seed"] [data-testid="post-setting-value"]').innerText(), String(seed))
  assert.match(await byTestId(pageA, 'post-image').getAttribute('src'), /\/thumb$/, 'the thumbnail first')
  await byTestId(pageA, 'post-full-size').click()
  await pageA.locator('[data-testid="post-image"][data-full="true"]').waitFor()
  assert.match(await byTestId(pageA, 'post-image').getAttribute('src'), /\/file$/, 'the PNG on demand')
  await pageA.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()

  log('B sees it on the home page, opens the gallery from the header: a lazy WebP thumbnail')
  await pageB.goto('/')
  await card(pageB, postId).waitFor()
  await byTestId(pageB, 'nav-gallery').click()
  await pageB.waitForURL('**/gallery')
  await card(pageB, postId).waitFor()
  const img = card(pageB, postId).locator('[data-testid="post-card-image"]')
  assert.match(await img.getAttribute('src'), /\/api\/images\/[0-9a-f]+\/thumb$/)
  assert.equal(await img.getAttribute('loading'), 'lazy')
  assert.equal(await card(pageB, postId).locator('[data-testid="post-card-title"]').innerText(), title)

  log('a tag chip filters the gallery (in the URL); the model filter applies on Enter')
  await card(pageB, postId).locator('[data-testid="post-card-tag"][data-tag="sea"]').click()
  await pageB.waitForURL(/tag=sea/)
  await card(pageB, postId).waitFor()
  await byTestId(pageB, 'gallery-model').fill('no-such-model')
  await byTestId(pageB, 'gallery-model').press('Enter')
  await byTestId(pageB, 'post-grid-empty').waitFor()
  await byTestId(pageB, 'gallery-active-model').locator('.el-tag__close').click()
  await card(pageB, postId).waitFor()

  log('B opens it, likes it: A sees the count and the bell change live')
  await card(pageB, postId).locator('[data-testid="post-card-title"]').click()
  await pageB.waitForURL(`**/p/${postId}`)
  await pageB.locator('[data-testid="chat-connection"][data-state="open"]').waitFor()
  await byTestId(pageB, 'like-button').click()
  await pageB.locator('[data-testid="like-button"][data-liked="true"] [data-testid="like-count"]').filter({ hasText: '1' }).waitFor()
  await byTestId(pageA, 'like-count').filter({ hasText: /^1$/ }).waitFor()
  await waitBadge(pageA, 1)

  log('B unlikes and likes again: A is not told a second time')
  await byTestId(pageB, 'like-button').click()
  await pageB.locator('[data-testid="like-button"][data-liked="false"]').waitFor()
  await byTestId(pageB, 'like-button').click()
  await pageB.locator('[data-testid="like-button"][data-liked="true"] [data-testid="like-count"]').filter({ hasText: '1' }).waitFor()

  log('B writes in the post\'s room: A sees the message and a second notification')
  await byTestId(pageB, 'chat-input').fill('what a sky!')
  await byTestId(pageB, 'chat-input').press('Enter')
  await byTestId(pageA, 'chat-message-text').filter({ hasText: 'what a sky!' }).waitFor()
  await waitBadge(pageA, 2)

  log('A opens the bell: newest first, opening one marks it read, then mark all as read')
  await byTestId(pageA, 'notif-bell').click()
  await byTestId(pageA, 'notif-item').first().waitFor()
  const texts = await byTestId(pageA, 'notif-text').allInnerTexts()
  assert.equal(texts.length, 2, `one like and one message, the like told once: ${texts.join(' / ')}`)
  assert.match(texts[0], new RegExp(`wrote beside your post “${title}”`), 'named by its title, not post:<id>')
  assert.match(texts[1], new RegExp(`liked your post ${title}`))
  await pageA.locator('[data-testid="notif-item"][data-kind="like"]').click()
  await waitBadge(pageA, 1)
  await pageA.waitForURL(`**/p/${postId}`)
  await byTestId(pageA, 'notif-bell').click()
  await byTestId(pageA, 'notif-read-all').click()
  await waitBadge(pageA, 0)
  await pageA.keyboard.press('Escape')
  await byTestId(pageA, 'notif-panel').waitFor({ state: 'hidden' })

  log('B reports the post; a second report says it is already reported')
  await byTestId(pageB, 'post-report').click()
  await byTestId(pageB, 'report-submit').click()
  await toast(pageB, 'success').waitFor()
  await byTestId(pageB, 'report-dialog').waitFor({ state: 'hidden' }).catch(() => {})
  await byTestId(pageB, 'post-report').click()
  await byTestId(pageB, 'report-submit').click()
  await byTestId(pageB, 'report-already').waitFor()
  await pageB.keyboard.press('Escape')
  await byTestId(pageB, 'report-already').waitFor({ state: 'hidden' })

  log('B remixes it: the Generate form has its prompt and seed')
  await byTestId(pageB, 'post-remix').click()
  await pageB.waitForURL((url) => url.pathname === '/generate' && !url.searchParams.has('from'))
  await pageB.waitForFunction((p) => document.querySelector('[data-testid="gen-prompt"]')?.value === p, prompt)
  assert.equal(await byTestId(pageB, 'gen-seed').inputValue(), String(seed))

  log('B follows A from A\'s profile and sees the post under Following')
  await pageB.goto(`/u/${alice.username}`)
  await byTestId(pageB, 'user-stat-posts').filter({ hasText: '1' }).waitFor()
  await card(pageB, postId).waitFor()
  await byTestId(pageB, 'follow-button').click()
  await pageB.locator('[data-testid="follow-button"][data-following="true"]').waitFor()
  await byTestId(pageB, 'user-stat-followers').filter({ hasText: '1' }).waitFor()
  await waitBadge(pageA, 1)
  await pageB.goto('/gallery?feed=following')
  await card(pageB, postId).waitFor()

  log('A publishes the same job again from the history: refused; then an NSFW post')
  await pageA.goto('/generate')
  await pageA.locator(`[data-testid="gen-history-item"][data-job-id="${firstJob}"]`).hover()
  await pageA.locator(`[data-testid="gen-history-publish"][data-job-id="${firstJob}"]`).click()
  await byTestId(pageA, 'publish-title').fill('Twice')
  await byTestId(pageA, 'publish-submit').click()
  await byTestId(pageA, 'publish-error').filter({ hasText: 'already published' }).waitFor()
  await pageA.keyboard.press('Escape')
  await byTestId(pageA, 'publish-error').waitFor({ state: 'hidden' })
  await generate(pageA, { prompt: `a red moon ${run}`, seed: 7 })
  await byTestId(pageA, 'gen-publish').click()
  const nsfwId = await publish(pageA, { title: `Moon ${run}`, nsfw: true })

  log('B sees the NSFW post blurred until opting in, remembered after a reload')
  await pageB.goto('/gallery')
  await card(pageB, nsfwId).waitFor()
  assert.equal(await card(pageB, nsfwId).getAttribute('data-blurred'), 'true')
  await card(pageB, nsfwId).locator('[data-testid="post-card-nsfw"]').waitFor()
  assert.equal(await card(pageB, postId).getAttribute('data-blurred'), 'false', 'only NSFW posts are blurred')
  await byTestId(pageB, 'gallery-nsfw-switch').click()
  await pageB.locator(`[data-testid="post-card"][data-post-id="${nsfwId}"][data-blurred="false"]`).waitFor()
  await pageB.reload()
  await pageB.locator(`[data-testid="post-card"][data-post-id="${nsfwId}"][data-blurred="false"]`).waitFor()
  await byTestId(pageB, 'gallery-nsfw-switch').click()
  await pageB.locator(`[data-testid="post-card"][data-post-id="${nsfwId}"][data-blurred="true"]`).waitFor()


  log('A edits the NSFW post\'s title, then deletes it: gone from the gallery')
  await byTestId(pageA, 'post-edit').click()
  await byTestId(pageA, 'publish-title').fill(`Moon, edited ${run}`)
  await byTestId(pageA, 'publish-submit').click()
  await byTestId(pageA, 'post-title').filter({ hasText: `Moon, edited ${run}` }).waitFor()
  await byTestId(pageA, 'post-delete').click()
  await pageA.locator('.el-message-box__btns .el-button--danger').click()
  await pageA.waitForURL('**/gallery')
  await card(pageA, postId).waitFor()
  assert.equal(await card(pageA, nsfwId).count(), 0)

  assert.deepEqual(errorsB, [], 'no script errors in B\'s page')
}, { timeoutMs: 110_000 })
