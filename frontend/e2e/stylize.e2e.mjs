// Stylize, as people use it: on a phone (390×844) pick a photo, a style card, a few words, Go; watch the
// upload's progress and the render live; Share, and the link opens for a visitor who is not signed in (and
// its HTML carries the link-preview tags); try another style (nothing uploaded again); Publish with the
// original photo. Then on a desktop, from the art studio's link, in Chinese, with a bad file first.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/stylize.e2e.mjs   (the demo model, ControlNet and preset needed)

import { assert, BASE_URL, byTestId, freshContext, makePng, registerViaUi, runE2E } from './lib.mjs'

const PHONE = { width: 390, height: 844 }

/** A photo big enough (~1.5 MB) that a throttled upload shows its progress: a gradient with a sun and noise. */
function photo(width, height, variant = 0) {
  let seed = 99 + variant * 7919
  const noise = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed % 97
  }
  return makePng(width, height, (x, y) => {
    let [r, g, b] = [70 + (y * 120) / height, 130 + (x * 80) / width, 235 - (y * 60) / height]
    if (Math.hypot(x - width * 0.7, y - height * 0.3) < height * 0.15) [r, g, b] = [250, 210 - variant * 60, 80]
    if (y > height * 0.72) [r, g, b] = [60, 150 - (y - height * 0.72) / 3, 70]
    return [r + noise() - 48, g + noise() - 48, b + noise() - 48]
  })
}

/** The meta tags of a page's HTML as a link previewer sees it (no script runs). */
function metaTags(html) {
  const tags = {}
  for (const match of html.matchAll(/<meta (property|name)="([^"]+)" content="([^"]*)">/g)) tags[match[2]] = match[3]
  return tags
}

async function renderToTheEnd(page, log) {
  const seen = { progress: [], control: false, preview: false }
  const watch = setInterval(async () => {
    const bar = await page.locator('[data-testid="stylize-upload-progress"]').getAttribute('aria-valuenow', { timeout: 50 }).catch(() => null)
    if (bar !== null && !seen.progress.includes(bar)) seen.progress.push(bar)
    if (await byTestId(page, 'stylize-control').count().catch(() => 0)) seen.control = true
    if (await byTestId(page, 'stylize-preview').count().catch(() => 0)) seen.preview = true
  }, 15)
  await byTestId(page, 'stylize-go').click()
  await byTestId(page, 'stylize-result').waitFor({ timeout: 30_000 })
  clearInterval(watch)
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-testid="stylize-result"]')
    return img && img.complete && img.naturalWidth > 0
  })
  log('seen while rendering', JSON.stringify(seen))
  return seen
}

await runE2E('stylize', async ({ browser, page, log }) => {
  log('phone: sign up, open Stylize')
  const phone = await freshContext(browser, { viewport: PHONE })
  const mobile = await phone.newPage()
  await registerViaUi(mobile)
  await mobile.goto('/stylize')
  await byTestId(mobile, 'stylize-take').waitFor()
  assert.ok(await byTestId(mobile, 'stylize-choose').isVisible(), 'take or choose a photo')
  const width = await mobile.evaluate(() => document.documentElement.scrollWidth)
  assert.ok(width <= PHONE.width, `nothing wider than the phone (${width} px)`)
  const card = byTestId(mobile, 'stylize-preset').first()
  assert.equal(await card.getAttribute('data-name'), 'demo-lines')
  assert.equal(await card.getAttribute('aria-pressed'), 'true', 'the first available style is chosen')

  log('pick a photo, a few words, Go over a slow upload: progress, then the outlines and previews live')
  await byTestId(mobile, 'stylize-input').setInputFiles({ name: 'beach.png', mimeType: 'image/png', buffer: photo(900, 600) })
  await byTestId(mobile, 'stylize-photo').waitFor()
  await byTestId(mobile, 'stylize-subject').fill('a lighthouse')
  const cdp = await phone.newCDPSession(mobile)
  await cdp.send('Network.enable')
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 1024 * 1024 })
  const uploads = []
  mobile.on('requestfinished', async (request) => {
    // A Blob body is not kept by the driver: the headers that went over the wire say how much was sent.
    if (new URL(request.url()).pathname !== '/api/stylize') return
    const headers = await request.allHeaders()
    uploads.push({ url: request.url(), bytes: Number(headers['content-length'] ?? 0), type: headers['content-type'] ?? '' })
  })
  const seen = await renderToTheEnd(mobile, log)
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 })
  assert.ok(seen.progress.length >= 2, `upload progress moved: ${seen.progress}`)
  assert.ok(seen.control || seen.preview, 'the render showed before it was done')
  assert.equal(uploads.length, 1)
  assert.ok(uploads[0].bytes > 500_000, `the photo went up once (${uploads[0].bytes} bytes)`)
  assert.match(uploads[0].url, /subject=a\+lighthouse|subject=a%20lighthouse/)
  await byTestId(mobile, 'stylize-done').waitFor()
  assert.ok(await byTestId(mobile, 'stylize-go').isEnabled(), 'Go again at once (another style)')

  log('share: the link opens for a visitor who is not signed in')
  await byTestId(mobile, 'stylize-share').click()
  await byTestId(mobile, 'share-create').click()
  const link = await byTestId(mobile, 'share-link').inputValue()
  assert.match(link, /\/s\/[A-Za-z0-9_-]{12}$/)
  const visitor = await (await freshContext(browser, { viewport: PHONE })).newPage()
  await visitor.goto(link)
  await byTestId(visitor, 'share-image').waitFor()
  await visitor.waitForFunction(() => document.querySelector('[data-testid="share-image"]')?.naturalWidth > 0)
  assert.equal(await byTestId(visitor, 'header-login').count(), 1, 'the visitor is not signed in')
  assert.equal(await byTestId(visitor, 'share-original-photo').count(), 0, 'the photo is not shown unless chosen')
  const html = await (await fetch(link)).text()
  const tags = metaTags(html)
  assert.ok(tags['og:image']?.startsWith(BASE_URL + '/api/images/'), `og:image: ${tags['og:image']}`)
  assert.equal(tags['twitter:card'], 'summary_large_image')
  const picture = await fetch(tags['og:image'])
  assert.equal(picture.status, 200)
  assert.equal(picture.headers.get('content-type'), 'image/png')
  await visitor.context().close()
  await mobile.keyboard.press('Escape')

  log('try another style: the same photo, nothing uploaded again')
  await byTestId(mobile, 'stylize-another').click()
  await byTestId(mobile, 'stylize-go').waitFor()
  await renderToTheEnd(mobile, log)
  assert.equal(uploads.length, 2)
  assert.match(uploads[1].url, /photo_of=[0-9a-f]{32}/)
  assert.equal(uploads[1].bytes, 0, 'no photo in the second request')
  assert.ok(!uploads[1].type.startsWith('image/'), uploads[1].type)

  log('publish, showing the original photo')
  await byTestId(mobile, 'stylize-publish').click()
  await byTestId(mobile, 'publish-original').click()
  await byTestId(mobile, 'publish-title').fill('Lighthouse, sketched')
  await byTestId(mobile, 'publish-submit').click()
  await mobile.waitForURL(/\/p\/\d+$/)
  await byTestId(mobile, 'post-title').filter({ hasText: 'Lighthouse, sketched' }).waitFor()
  await byTestId(mobile, 'post-original').waitFor()
  await mobile.waitForFunction(() => document.querySelector('[data-testid="post-original"] img')?.naturalWidth > 0)
  const postTags = metaTags(await (await fetch(mobile.url())).text())
  assert.equal(postTags['og:title'], 'Lighthouse, sketched', 'a post page carries the same tags')
  await phone.close()

  log('desktop, in Chinese: from the art studio; a file that is not a photo is refused in the page language')
  await registerViaUi(page)
  await page.evaluate(() => localStorage.setItem('va.locale', 'zh-CN'))
  await page.goto('/studio')
  await byTestId(page, 'studio-to-stylize').click()
  await page.waitForURL('**/stylize')
  await byTestId(page, 'nav-stylize').waitFor()
  assert.equal((await byTestId(page, 'nav-stylize').textContent()).trim(), '风格化')
  await byTestId(page, 'stylize-input').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a photo') })
  await byTestId(page, 'stylize-go').click()
  await byTestId(page, 'stylize-error').waitFor()
  const refusal = await byTestId(page, 'stylize-error').textContent()
  assert.ok(refusal.includes('无法读取'), `told in Chinese: ${refusal}`)
  log('a 17 MP photo is scaled to about 12 MP on the device before it is sent (the engine takes 16.7 MP)')
  const huge = makePng(4200, 4100, (x, y) => [x & 255, y & 255, (x ^ y) & 255])
  const shown = await byTestId(page, 'stylize-photo').getAttribute('src')
  await byTestId(page, 'stylize-input').setInputFiles({ name: 'huge.png', mimeType: 'image/png', buffer: huge })
  await page.waitForFunction((old) => {
    const img = document.querySelector('[data-testid="stylize-photo"]')
    return img && img.getAttribute('src') !== old && img.complete && img.naturalWidth > 0
  }, shown, { timeout: 20_000 })
  const [answer] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/api/stylize'),
    renderToTheEnd(page, log),
  ])
  const sent = (await answer.json()).job
  assert.ok(sent.photo_width * sent.photo_height <= 12_100_000, `scaled: ${sent.photo_width}x${sent.photo_height}`)
  assert.ok(Math.abs(sent.photo_width / sent.photo_height - 4200 / 4100) < 0.01, 'the same aspect')

  await byTestId(page, 'stylize-input').setInputFiles({ name: 'park.png', mimeType: 'image/png', buffer: photo(640, 480, 1) })
  await byTestId(page, 'stylize-photo').waitFor()
  await renderToTheEnd(page, log)
  assert.equal(await byTestId(page, 'stylize-error').count(), 0)
  const [download] = await Promise.all([page.waitForEvent('download'), byTestId(page, 'stylize-download').click()])
  assert.match(download.suggestedFilename(), /\.png$/)

  log('desktop: share with the original photo; a visitor sees both')
  await byTestId(page, 'stylize-share').click()
  await byTestId(page, 'share-original').click()
  await byTestId(page, 'share-create').click()
  const desktopLink = await byTestId(page, 'share-link').inputValue()
  const guest = await (await freshContext(browser)).newPage()
  await guest.goto(desktopLink)
  await guest.waitForFunction(() => document.querySelector('[data-testid="share-image"]')?.naturalWidth > 0)
  await guest.waitForFunction(() => document.querySelector('[data-testid="share-original-photo"] img')?.naturalWidth > 0)
  assert.equal(await byTestId(guest, 'share-make-own').count(), 1)
})
