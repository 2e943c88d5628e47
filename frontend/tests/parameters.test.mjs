// Unit tests of parseA1111 (src/api/parameters.ts): remixing someone else's published image reads its
// settings from the AUTOMATIC1111 `parameters` text the server writes (inference/images.py), since the
// job itself stays private.
//   node --test tests/        (npm run test:unit)

import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import ts from 'typescript'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outDir = join(root, 'node_modules', '.cache', 'va-unit')
mkdirSync(outDir, { recursive: true })
const { outputText } = ts.transpileModule(readFileSync(join(root, 'src', 'api', 'parameters.ts'), 'utf8'), {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
})
writeFileSync(join(outDir, 'parameters.mjs'), outputText)
const { parseA1111 } = await import(pathToFileURL(join(outDir, 'parameters.mjs')).href)

test('all fields, as the server writes them for txt2img', () => {
  const text = 'a lighthouse at dusk, oil painting\nNegative prompt: fog, blurry\n'
    + 'Steps: 2, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 64x96, Model hash: abc123, Model: demo-tiny'
  assert.deepEqual(parseA1111(text), {
    prompt: 'a lighthouse at dusk, oil painting', negative_prompt: 'fog, blurry', steps: 2, sampler: 'Euler a',
    guidance: 7.5, seed: 1234, width: 64, height: 96, model: 'demo-tiny',
  })
})

test('several prompt lines, no negative prompt, img2img strength, non-Latin text', () => {
  const text = '灯塔\nat dusk: warm light, long exposure\n'
    + 'Steps: 30, Sampler: DPM++ 2M, CFG scale: 7, Seed: 4294967295, Size: 512x512, Model: sd-1.5, Denoising strength: 0.6'
  const out = parseA1111(text)
  assert.equal(out.prompt, '灯塔\nat dusk: warm light, long exposure')
  assert.equal(out.negative_prompt, '')
  assert.equal(out.sampler, 'DPM++ 2M')
  assert.equal(out.seed, 4294967295)
  assert.equal(out.strength, 0.6)
  assert.equal(out.guidance, 7)
})

test('a negative prompt over several lines', () => {
  const out = parseA1111('p\nNegative prompt: one\ntwo\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 0, Size: 64x64, Model: m')
  assert.equal(out.prompt, 'p')
  assert.equal(out.negative_prompt, 'one\ntwo')
  assert.equal(out.seed, 0)
})

test('no settings line: only the prompt', () => {
  assert.deepEqual(parseA1111('just a prompt'), { prompt: 'just a prompt', negative_prompt: '' })
})
