import type { RouteLocationRaw } from 'vue-router'

/** Header navigation. Features add their entry here (Generate, Gallery, Models, Rooms…). */
export interface NavItem {
  /** i18n key of the label. */
  label: string
  to: RouteLocationRaw
  /** Route name that marks this item active (also its children). */
  match: string
  requiresAuth?: boolean
}

export const NAV_ITEMS: NavItem[] = [
  { label: 'nav.home', to: { name: 'home' }, match: 'home' },
  { label: 'nav.rooms', to: { name: 'rooms' }, match: 'rooms' },
]
