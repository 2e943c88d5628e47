// Shared helpers for the browser tests: launch Debian's Chromium through playwright-core,
// open fresh contexts against VA_BASE_URL, build test images, and drive the auth pages.
// Each *.e2e.mjs script is plain Node ESM: `node e2e/<name>.e2e.mjs`, exit status 0 = pass.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { deflateSync } from 'node:zlib'
import { chromium } from 'playwright-core'

export const BASE_URL = (process.env.VA_BASE_URL || 'http://127.0.0.1:8888').replace(/\/+$/, '')
export const ARTIFACTS = process.env.VA_E2E_ARTIFACTS || ''
/** Per action/expectation; generous for a loaded CI machine, far below the script budget. */
export const STEP_TIMEOUT_MS = 10_000
/** The whole script must finish within this. */
export const SCRIPT_TIMEOUT_MS = 55_000

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  })
}

/**
 * Content-Security-Policy violations seen by any page of any context made here: the server's policy
 * must let every flow run, so `runE2E` fails a script that saw one.
 */
export const cspViolations = []

async function watchCsp(context) {
  await context.exposeBinding('__vaCspViolation', (_source, violation) => { cspViolations.push(violation) })
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__vaCspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`)
    })
  })
  context.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) cspViolations.push(`console: ${msg.text()}`)
  })
}

/** A fresh context (no cookies, no storage), English and light unless told otherwise. */
export async function freshContext(browser, { locale = 'en-US', colorScheme = 'light', viewport } = {}) {
  const context = await browser.newContext({
    baseURL: BASE_URL,
    locale,
    colorScheme,
    viewport: viewport ?? { width: 1280, height: 860 },
  })
  context.setDefaultTimeout(STEP_TIMEOUT_MS)
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS)
  await watchCsp(context)
  return context
}

/** A username that is valid (a–z, 0–9, _; 3–32 chars) and unique across runs. */
export function randomUsername(prefix = 'e2e') {
  return `${prefix}_${randomBytes(5).toString('hex')}`.slice(0, 32)
}

export function randomPassword() {
  return `pw-${randomBytes(9).toString('base64url')}`
}

/** The element with this data-testid. */
export const byTestId = (page, id) => page.getByTestId(id)

// --- images -----------------------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

function crc32(buffer) {
  let c = 0xffffffff
  for (const byte of buffer) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function pngChunk(type, data) {
  const length = Buffer.alloc(4)
  length.writeUInt32BE(data.length)
  const typeAndData = Buffer.concat([Buffer.from(type, 'ascii'), data])
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(typeAndData))
  return Buffer.concat([length, typeAndData, crc])
}

/** A valid RGB PNG; `pixel(x, y)` returns [r, g, b] (default: a diagonal gradient). */
export function makePng(width = 64, height = 64, pixel = (x, y) => [x * 4, y * 4, 160]) {
  const header = Buffer.alloc(13)
  header.writeUInt32BE(width, 0)
  header.writeUInt32BE(height, 4)
  header[8] = 8 // bit depth
  header[9] = 2 // colour type: RGB
  const rows = Buffer.alloc(height * (1 + width * 3))
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3) // each row starts with filter byte 0 (none)
    for (let x = 0; x < width; x++) {
      const [r, g, b] = pixel(x, y)
      rows.set([r & 255, g & 255, b & 255], row + 1 + x * 3)
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(rows)),
    pngChunk('IEND', Buffer.alloc(0)),
  ])
}

// --- page actions ------------------------------------------------------------------------

/** Registers through the Register page and waits until the header shows the new user. */
export async function registerViaUi(page, { username = randomUsername(), password = randomPassword(), email } = {}) {
  await page.goto('/register')
  await byTestId(page, 'register-username').fill(username)
  if (email) await byTestId(page, 'register-email').fill(email)
  await byTestId(page, 'register-password').fill(password)
  await byTestId(page, 'register-submit').click()
  await byTestId(page, 'header-user').waitFor()
  return { username, password }
}

/** Logs in through the Login page, submitting with Enter in the password field. */
export async function loginViaUi(page, { username, password }) {
  if (!new URL(page.url(), BASE_URL).pathname.startsWith('/login')) await page.goto('/login')
  await byTestId(page, 'login-username').fill(username)
  await byTestId(page, 'login-password').fill(password)
  await byTestId(page, 'login-password').press('Enter')
  await byTestId(page, 'header-user').waitFor()
}

/** Opens the account menu in the header and picks an entry (`header-logout`, `header-settings`…). */
export async function headerMenu(page, itemTestId) {
  await byTestId(page, 'header-user').click()
  const item = byTestId(page, itemTestId)
  await item.waitFor({ state: 'visible' })
  await item.click()
}

export async function logoutViaUi(page) {
  await headerMenu(page, 'header-logout')
  await byTestId(page, 'header-login').waitFor()
}

/** The newest Element Plus toast of a kind ('success', 'error'…). */
export function toast(page, kind = 'success') {
  return page.locator(`.el-message--${kind}`).last()
}

// --- running -----------------------------------------------------------------------------

async function screenshot(page, name) {
  if (!ARTIFACTS || !page || page.isClosed()) return null
  mkdirSync(ARTIFACTS, { recursive: true })
  const path = join(ARTIFACTS, `${name}.png`)
  await page.screenshot({ path, fullPage: true }).catch(() => {})
  return path
}

/**
 * Runs one browser test: `body({ browser, page, context, log })`. On failure (or on running past
 * `timeoutMs`, SCRIPT_TIMEOUT_MS unless told) it screenshots the page to $VA_E2E_ARTIFACTS/<name>.png, prints why and
 * exits 1; console errors from the page are printed to help reading a failure.
 */
export async function runE2E(name, body, { timeoutMs = SCRIPT_TIMEOUT_MS } = {}) {
  const started = Date.now()
  const log = (...args) => console.log(`[${name} ${((Date.now() - started) / 1000).toFixed(1)}s]`, ...args)
  let browser
  let page
  const pageErrors = []
  const fail = async (err) => {
    const shot = await screenshot(page, name)
    console.error(`\nFAIL ${name}: ${err?.stack || err}`)
    if (page && !page.isClosed()) console.error(`  at URL: ${page.url()}`)
    if (pageErrors.length) console.error(`  page errors:\n    ${pageErrors.join('\n    ')}`)
    if (shot) console.error(`  screenshot: ${shot}`)
    await browser?.close().catch(() => {})
    process.exit(1)
  }
  const watchdog = setTimeout(() => fail(new Error(`timed out after ${timeoutMs / 1000} s`)), timeoutMs)
  try {
    browser = await launch()
    const context = await freshContext(browser)
    page = await context.newPage()
    page.on('pageerror', (err) => pageErrors.push(String(err)))
    if (process.env.VA_E2E_DEBUG) {
      page.on('response', (r) => {
        if (new URL(r.url()).pathname.startsWith('/api/')) log('http', r.request().method(), r.status(), r.url())
      })
    }
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(`console: ${msg.text()}`)
    })
    await body({ browser, context, page, log })
    assert.deepEqual(cspViolations, [], 'the Content-Security-Policy blocked something the app does')
    clearTimeout(watchdog)
    await browser.close()
    log('PASS')
    process.exit(0)
  } catch (err) {
    clearTimeout(watchdog)
    await fail(err)
  }
}

export { assert }
