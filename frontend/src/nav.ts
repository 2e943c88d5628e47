import type { RouteLocationRaw } from 'vue-router'

/** Header navigation. Features add their entry here (Generate, Gallery, Models, Rooms…). */
export interface NavItem {
  /** i18n key of the label. */
  label: string
  to: RouteLocationRaw
  /** Route name that marks this item active (also its children). */
  match: string
  requiresAuth?: boolean
  /** Only for moderators (the queue). */
  requiresModerator?: boolean
}

export const NAV_ITEMS: NavItem[] = [
  { label: 'nav.home', to: { name: 'home' }, match: 'home' },
  { label: 'nav.gallery', to: { name: 'gallery' }, match: 'gallery' },
  { label: 'nav.live', to: { name: 'live' }, match: 'live' },
  // Shown to guests too: the route sends them to log in and back.
  { label: 'nav.generate', to: { name: 'generate' }, match: 'generate' },
  { label: 'nav.models', to: { name: 'models' }, match: 'models' },
  { label: 'nav.rooms', to: { name: 'rooms' }, match: 'rooms' },
  { label: 'nav.stylize', to: { name: 'stylize' }, match: 'stylize' },
  { label: 'nav.studio', to: { name: 'studio' }, match: 'studio' },
  { label: 'nav.collab', to: { name: 'collab' }, match: 'collab' },
  { label: 'nav.moderation', to: { name: 'moderation' }, match: 'moderation', requiresAuth: true, requiresModerator: true },
]
