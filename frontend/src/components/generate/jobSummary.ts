/** A job in a few words, by its kind: a prompt, the art studio's four styles, a stylized photo. */

import type { Job } from '@/api/types'

type Translate = (key: string, values?: Record<string, unknown>) => string

export function jobTitle(job: Pick<Job, 'kind' | 'prompt' | 'preset' | 'preset_title' | 'subject'>, t: Translate): string {
  if (job.kind === 'art') {
    return t('generate.kindArt', { preset: job.preset === 'quality' ? t('studio.presetQuality') : t('studio.presetFast') })
  }
  if (job.kind === 'stylize') {
    const style = job.preset_title || String(job.preset ?? '')
    return job.subject ? t('generate.kindStylizeWords', { style, words: job.subject }) : t('generate.kindStylize', { style })
  }
  return job.prompt || t('generate.untitled')
}
