// Art studio, as a person would use it: open it from the header, upload a photo, watch the four
// styles fill in (a spinner for those still running), download one, publish one as a post, upload the same photo again
// (served from the cache), then a different photo with the quality preset; Chinese labels too.
//   VA_BASE_URL=http://127.0.0.1:8888 node e2e/studio.e2e.mjs

import { assert, byTestId, makePng, registerViaUi, runE2E } from './lib.mjs'

const STYLES = ['pencil', 'colour_pencil', 'oil', 'watercolour']

/** A real-looking photo: a sky gradient, a sun, a house, grass, and a little sensor noise. */
function photo(width, height, variant = 0) {
  let seed = 1234 + variant * 7919
  const noise = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return (seed % 5) - 2
  }
  return makePng(width, height, (x, y) => {
    let [r, g, b] = [70 + (y * 120) / height, 130 + (y * 80) / height, 235 - (y * 60) / height]
    const sun = Math.hypot(x - width * (0.75 - variant * 0.4), y - height * 0.25)
    if (sun < height * 0.12) [r, g, b] = [250, 220 - variant * 80, 90]
    if (y > height * 0.7) [r, g, b] = [60 + (x * 40) / width, 150 - (y - height * 0.7) / 2, 60]
    if (x > width * 0.3 && x < width * 0.55 && y > height * 0.45 && y <= height * 0.75) [r, g, b] = [180, 70, 50]
    if (x > width * 0.4 && x < width * 0.46 && y > height * 0.6 && y <= height * 0.75) [r, g, b] = [90, 50, 30]
    const n = noise()
    return [Math.max(0, Math.min(255, r + n)), Math.max(0, Math.min(255, g + n)), Math.max(0, Math.min(255, b + n))]
  })
}

async function allFour(page, log) {
  await page.waitForFunction(
    () => document.querySelectorAll('[data-testid="studio-result"][data-ready="true"]').length === 4,
    null, { timeout: 30_000 })
  // Every image really loaded (decoded by the browser), not just a tag with a URL.
  await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="studio-image"]')]
    .every((img) => img.complete && img.naturalWidth > 0), null, { timeout: 10_000 })
  const sizes = await page.$$eval('[data-testid="studio-image"]', (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]))
  log('sizes', JSON.stringify(sizes))
  return sizes
}

await runE2E('studio', async ({ page, log }) => {
  await registerViaUi(page)

  log('open the studio from the header')
  await byTestId(page, 'nav-studio').click()
  await page.waitForURL('**/studio')
  await byTestId(page, 'studio-drop').waitFor()

  log('upload a photo: four results appear, one per style, with spinners meanwhile')
  const seen = { spinner: false, partial: false }
  const watch = setInterval(async () => {
    const ready = await page.locator('[data-testid="studio-result"][data-ready="true"]').count().catch(() => 0)
    const spinners = await byTestId(page, 'studio-spinner').count().catch(() => 0)
    if (spinners > 0) seen.spinner = true
    if (ready > 0 && ready < 4) seen.partial = true
  }, 20)
  await byTestId(page, 'studio-input').setInputFiles({ name: 'holiday.png', mimeType: 'image/png', buffer: photo(900, 600) })
  const sizes = await allFour(page, log)
  clearInterval(watch)
  log('seen while running', JSON.stringify(seen))
  assert.deepEqual(sizes, Array(4).fill([900, 600]), 'each style keeps the photo size (under the 1024 px bound)')
  const styles = await page.$$eval('[data-testid="studio-result"]', (cards) => cards.map((c) => c.dataset.style))
  assert.deepEqual(styles, STYLES)
  assert.equal(await byTestId(page, 'studio-spinner').count(), 0, 'no spinner once all four are in')
  assert.equal(await byTestId(page, 'studio-error').count(), 0)

  log('download one: a PNG (the server names it; its Content-Disposition wins over the link\'s name)')
  const [download] = await Promise.all([page.waitForEvent('download'), byTestId(page, 'studio-download').first().click()])
  assert.match(download.suggestedFilename(), /\.png$/)

  log('publish one style: that one image of the art job becomes a post')
  const oilImage = await page.locator('[data-testid="studio-result"][data-style="oil"] [data-testid="studio-image"]').getAttribute('src')
  await page.locator('[data-testid="studio-publish"][data-style="oil"]').click()
  await byTestId(page, 'publish-title').fill('Holiday in oil')
  await byTestId(page, 'publish-submit').click()
  await page.waitForURL(/\/p\/\d+$/)
  await byTestId(page, 'post-title').filter({ hasText: 'Holiday in oil' }).waitFor()
  const postImage = await byTestId(page, 'post-image').getAttribute('src')
  assert.equal(postImage.split('/')[3], oilImage.split('/')[3], 'the post shows the oil painting')
  assert.equal(await byTestId(page, 'post-thumb').count(), 0, 'one image only')
  await page.goto('/studio')
  await byTestId(page, 'studio-drop').waitFor()

  log('the same photo again: served from the cache at once')
  await byTestId(page, 'studio-input').setInputFiles({ name: 'again.png', mimeType: 'image/png', buffer: photo(900, 600) })
  await allFour(page, log)
  await page.waitForFunction(() => document.querySelector('[data-testid="studio-status"]')?.textContent?.includes('cache'))

  log('a different photo, quality preset, in Chinese')
  await page.evaluate(() => localStorage.setItem('va.locale', 'zh-CN'))
  await page.reload()
  await byTestId(page, 'studio-drop').waitFor()
  await byTestId(page, 'studio-preset-quality').click()
  await byTestId(page, 'studio-input').setInputFiles({ name: 'other.png', mimeType: 'image/png', buffer: photo(640, 480, 1) })
  await allFour(page, log)
  const titles = await page.$$eval('[data-testid="studio-result"] .el-card__header span', (s) => s.map((e) => e.textContent.trim()))
  assert.ok(titles.includes('油画') && titles.includes('水彩'), `Chinese style names: ${titles}`)
  assert.ok(!(await byTestId(page, 'studio-status').textContent()).includes('缓存'), 'a different photo is not a cache hit')

  log('not an image: refused with a message')
  await byTestId(page, 'studio-input').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not a photo at all') })
  await byTestId(page, 'studio-error').waitFor()
})
