/**
 * Reads AUTOMATIC1111's `parameters` text (what GET /api/images/<id> and the PNG carry):
 *   <prompt, possibly several lines>
 *   Negative prompt: <text>
 *   Steps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model: name
 * Used to remix someone else's published image, whose job (and so its settings) stays private.
 */

import type { GenerationSettings } from './types'

const NEGATIVE_PREFIX = 'Negative prompt: '
// Splits "Key: value, Key: value" on the commas that start a new key.
const FIELD_SPLIT = /,\s*(?=[A-Z][\w ]*: )/

export function parseA1111(parameters: string): Partial<GenerationSettings> {
  const lines = parameters.replace(/\r\n/g, '\n').split('\n')
  const last = lines.at(-1) ?? ''
  const fields: Record<string, string> = {}
  const hasFields = /^Steps: /.test(last)
  if (hasFields) {
    lines.pop()
    for (const part of last.split(FIELD_SPLIT)) {
      const colon = part.indexOf(': ')
      if (colon > 0) fields[part.slice(0, colon).trim()] = part.slice(colon + 2).trim()
    }
  }
  const negativeAt = lines.findIndex((line) => line.startsWith(NEGATIVE_PREFIX))
  const promptLines = negativeAt >= 0 ? lines.slice(0, negativeAt) : lines
  const out: Partial<GenerationSettings> = { prompt: promptLines.join('\n') }
  out.negative_prompt = negativeAt >= 0 ? lines.slice(negativeAt).join('\n').slice(NEGATIVE_PREFIX.length) : ''
  const int = (key: string) => (fields[key] && /^\d+$/.test(fields[key]!) ? Number(fields[key]) : undefined)
  const steps = int('Steps')
  if (steps !== undefined) out.steps = steps
  const seed = int('Seed')
  if (seed !== undefined) out.seed = seed
  if (fields.Sampler) out.sampler = fields.Sampler
  if (fields['CFG scale'] && Number.isFinite(Number(fields['CFG scale']))) out.guidance = Number(fields['CFG scale'])
  const size = /^(\d+)x(\d+)$/.exec(fields.Size ?? '')
  if (size) {
    out.width = Number(size[1])
    out.height = Number(size[2])
  }
  if (fields.Model) out.model = fields.Model
  if (fields['Denoising strength'] && Number.isFinite(Number(fields['Denoising strength']))) {
    out.strength = Number(fields['Denoising strength'])
  }
  return out
}
