/**
 * The generation draft: the settings being edited (remembered in localStorage), the models and limits
 * they must fit, the init image and the LoRAs picked from the hub. It knows nothing of jobs: `params()`
 * turns the draft into what `useJobs().submit()` sends.
 *
 * `applySettings()` loads a job's or a gallery post's settings into the draft (a remix).
 */

import { defineStore } from 'pinia'
import { computed, reactive, ref, shallowRef } from 'vue'
import { watchDebounced } from '@vueuse/core'
import { fetchCatalogue, type LoraChoice, type SubmitParams } from '@/api/generation'
import type { GenerationSettings, LocalModel, ModelCatalogue } from '@/api/types'
import { toActionError, type ActionError } from '@/composables/useAsyncAction'

export const DRAFT_STORAGE_KEY = 'va.generate.draft'
export const MAX_SEED = 2 ** 32 - 1

export const DEFAULT_SETTINGS: GenerationSettings = {
  kind: 'txt2img',
  model: '',
  prompt: '',
  negative_prompt: '',
  steps: 20,
  guidance: 7,
  width: 512,
  height: 512,
  seed: null,
  sampler: 'Euler a',
  batch: 1,
  strength: 0.75,
  public: false,
}

/** The draft field a refusal names (the server's `data.field`), to mark it in the form. */
export function fieldOfError(error: ActionError | null | undefined): keyof GenerationSettings | 'init_image' | null {
  const field = error?.field
  if (field === 'height') return 'width' // one size control for both sides
  if (field === 'negative_prompt' || field === 'init_image') return field
  return field && field in DEFAULT_SETTINGS ? (field as keyof GenerationSettings) : null
}

export function randomSeed(): number {
  const value = new Uint32Array(1)
  crypto.getRandomValues(value)
  return value[0]!
}

function loadDraft(): Partial<GenerationSettings> | null {
  try {
    const saved: unknown = JSON.parse(localStorage.getItem(DRAFT_STORAGE_KEY) || 'null')
    return saved && typeof saved === 'object' ? (saved as Partial<GenerationSettings>) : null
  } catch {
    return null // unreadable or disabled storage: start from the defaults
  }
}

/** Only known fields of the right type, so a stale or edited localStorage entry cannot break the form. */
function sanitise(values: Partial<GenerationSettings> | null): Partial<GenerationSettings> {
  const out: Partial<GenerationSettings> = {}
  if (!values) return out
  for (const key of Object.keys(DEFAULT_SETTINGS) as (keyof GenerationSettings)[]) {
    const value = values[key]
    const expected = typeof DEFAULT_SETTINGS[key]
    if (key === 'seed') {
      if (value === null || (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= MAX_SEED)) out.seed = value as number | null
    } else if (typeof value === expected && (expected !== 'number' || Number.isFinite(value))) {
      ;(out as Record<string, unknown>)[key] = value
    }
  }
  return out
}

export const useDraftStore = defineStore('draft', () => {
  // --- models -------------------------------------------------------------------------------

  const catalogue = shallowRef<ModelCatalogue | null>(null)
  const catalogueLoading = ref(false)
  const catalogueError = ref<ActionError | null>(null)
  let loading: Promise<void> | null = null

  const models = computed<LocalModel[]>(() => catalogue.value?.models ?? [])
  const selectedModel = computed(() => models.value.find((m) => m.name === draft.model) ?? null)

  async function loadCatalogue(): Promise<void> {
    catalogueLoading.value = true
    catalogueError.value = null
    try {
      catalogue.value = await fetchCatalogue()
      fitDraftToCatalogue()
    } catch (err) {
      catalogueError.value = toActionError(err)
    } finally {
      catalogueLoading.value = false
    }
  }

  /** The models once (again if that failed); concurrent callers share one request. */
  function ensureCatalogue(): Promise<void> {
    if (catalogue.value !== null) return Promise.resolve()
    return (loading ??= loadCatalogue().finally(() => {
      loading = null
    }))
  }

  // --- the draft ------------------------------------------------------------------------------

  const saved = sanitise(loadDraft())
  /** The settings in the form; remembered in localStorage. */
  const draft = reactive<GenerationSettings>({ ...DEFAULT_SETTINGS, ...saved })
  /** The init image for img2img (not remembered: files do not survive a reload). */
  const initImage = shallowRef<File | null>(null)
  /** LoRAs from the model hub ("Generate with this"), applied at their weight to the next jobs. */
  const loras = ref<LoraChoice[]>([])
  /** The size follows the model until the person sets one (or one was remembered). */
  let sizeChosen = 'width' in saved

  watchDebounced(draft, () => {
    try {
      const { kind: _kind, ...rest } = draft
      localStorage.setItem(DRAFT_STORAGE_KEY, JSON.stringify(rest))
    } catch {
      // Storage full or disabled: the settings just are not remembered.
    }
  }, { debounce: 250, deep: true })

  /** Picks a model and sampler the server has, and keeps numbers within its limits. */
  function fitDraftToCatalogue(): void {
    const info = catalogue.value
    if (!info) return
    if (info.models.length && !info.models.some((m) => m.name === draft.model)) {
      draft.model = info.models[0]!.name
      sizeChosen = false
    }
    if (!sizeChosen && selectedModel.value) {
      draft.width = draft.height = selectedModel.value.native_size
    }
    if (info.samplers.length && !info.samplers.includes(draft.sampler)) {
      draft.sampler = info.samplers.includes(DEFAULT_SETTINGS.sampler) ? DEFAULT_SETTINGS.sampler : info.samplers[0]!
    }
    const { limits } = info
    draft.steps = Math.min(Math.max(1, Math.round(draft.steps)), limits.steps_max)
    draft.width = fitSide(draft.width)
    draft.height = fitSide(draft.height)
    if (limits.batch_max) draft.batch = Math.min(Math.max(1, draft.batch), limits.batch_max)
    if (limits.guidance_max !== undefined) draft.guidance = Math.min(Math.max(0, draft.guidance), limits.guidance_max)
  }

  function fitSide(value: number): number {
    const limits = catalogue.value?.limits
    if (!limits) return value
    const multiple = limits.size_multiple ?? 8
    const rounded = Math.round(value / multiple) * multiple
    return Math.min(Math.max(rounded, limits.size_min), limits.size_max)
  }

  /** A person picked a model: its native size becomes the size. */
  function chooseModel(name: string): void {
    draft.model = name
    const model = models.value.find((m) => m.name === name)
    if (model) {
      draft.width = draft.height = fitSide(model.native_size)
      sizeChosen = false
    }
  }

  function chooseSize(width: number, height: number): void {
    draft.width = fitSide(width)
    draft.height = fitSide(height)
    sizeChosen = true
  }

  /** Loads settings into the draft (a job from the history, a remix): the prompt, seed and all. */
  function applySettings(settings: Partial<Omit<GenerationSettings, 'kind'>> & { kind?: string }): void {
    const clean = sanitise(settings as Partial<GenerationSettings>)
    delete clean.kind
    Object.assign(draft, clean)
    if ('width' in clean || 'height' in clean) sizeChosen = true
    fitDraftToCatalogue()
  }

  function addLora(name: string, weight = 0.8): void {
    if (!loras.value.some((l) => l.name === name)) loras.value.push({ name, weight })
  }

  function removeLora(name: string): void {
    loras.value = loras.value.filter((l) => l.name !== name)
  }

  /** What gen.submit / POST /api/jobs get for the draft (with these settings over it). */
  function params(overrides: Partial<GenerationSettings> = {}, img2img = initImage.value !== null): SubmitParams {
    const settings = { ...draft, ...overrides }
    const out: SubmitParams = {
      kind: img2img ? 'img2img' : 'txt2img',
      model: settings.model,
      prompt: settings.prompt.trim(),
      negative_prompt: settings.negative_prompt.trim(),
      steps: settings.steps,
      guidance: settings.guidance,
      width: settings.width,
      height: settings.height,
      sampler: settings.sampler,
      batch: settings.batch,
      public: settings.public,
    }
    if (settings.seed !== null) out.seed = settings.seed
    if (img2img) out.strength = settings.strength
    if (loras.value.length) out.loras = loras.value.map((l) => ({ ...l }))
    return out
  }

  return {
    catalogue, catalogueLoading, catalogueError, models, selectedModel, loadCatalogue, ensureCatalogue,
    settings: draft, initImage, loras, chooseModel, chooseSize, applySettings, fitSide, addLora, removeLora, params,
  }
})
