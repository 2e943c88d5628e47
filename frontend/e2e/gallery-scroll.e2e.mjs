// The gallery as a signed-out visitor with more posts than one page (VA_SCROLL_POSTS of them, tagged
// `tile`, made by the pytest wrapper): the first page only, then the next one as the end of the grid
// scrolls into view (next_cursor), each post once, newest first, and the end marked; no Following
// tab and no liking without an account; offline, an error with a retry that works once back online.
//   VA_SCROLL_POSTS=32 VA_BASE_URL=http://127.0.0.1:8888 node e2e/gallery-scroll.e2e.mjs

import { assert, byTestId, runE2E } from './lib.mjs'

const TOTAL = Number(process.env.VA_SCROLL_POSTS || 0)
const PAGE = 24

const cardIds = (page) => page.$$eval('[data-testid="post-card"]', (cards) => cards.map((c) => Number(c.dataset.postId)))

await runE2E('gallery-scroll', async ({ page, log }) => {
  assert.ok(TOTAL > PAGE, `VA_SCROLL_POSTS (${TOTAL}) is more than a page`)

  log('the first page, and nothing more while the end of the grid is out of sight')
  await page.goto('/gallery?tag=tile')
  await page.locator('[data-testid="post-grid"][data-loading="false"]').waitFor()
  await page.waitForTimeout(500)
  assert.equal((await cardIds(page)).length, PAGE)
  assert.equal(await byTestId(page, 'gallery-tab-following').count(), 0, 'no Following feed when signed out')
  assert.equal(await byTestId(page, 'like-button').first().getAttribute('aria-disabled'), 'true')
  assert.equal(await byTestId(page, 'gallery-tag').inputValue(), 'tile', 'the filter comes from the URL')

  log('scrolling down loads the rest')
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight))
  await byTestId(page, 'post-grid-end').waitFor()
  const ids = await cardIds(page)
  assert.equal(ids.length, TOTAL)
  assert.equal(new Set(ids).size, TOTAL, 'each post once')
  assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first')
  assert.equal(await byTestId(page, 'post-grid-more').count(), 0)

  log('offline, another tab fails with a retry button; back online, retry loads it')
  await page.evaluate(() => window.scrollTo(0, 0))
  await page.context().setOffline(true)
  await byTestId(page, 'gallery-tab-top').click()
  await page.waitForURL(/sort=top/)
  await byTestId(page, 'post-grid-error').waitFor()
  await page.context().setOffline(false)
  await byTestId(page, 'post-grid-retry').click()
  await byTestId(page, 'post-card').first().waitFor()
  assert.equal(await byTestId(page, 'post-grid-error').count(), 0)
  await byTestId(page, 'gallery-period-week').click()
  await page.waitForURL(/period=week/)
  await byTestId(page, 'post-card').first().waitFor()
})
