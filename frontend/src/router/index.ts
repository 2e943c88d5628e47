import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import { useSessionStore } from '@/stores/session'
import { safeNext } from '@/composables/formatting'
import HomeView from '@/views/HomeView.vue'

declare module 'vue-router' {
  interface RouteMeta {
    /** Signed-out visitors are sent to the login page, and back here afterwards. */
    requiresAuth?: boolean
    /** Login and register: a signed-in visitor goes on to `next` (or home). */
    guestOnly?: boolean
    /** Only moderators (others are sent home). */
    requiresModerator?: boolean
    /** i18n key of the page title. */
    title?: string
    /** The page fills the viewport under the header (no page scroll), e.g. chat. */
    fillHeight?: boolean
  }
}

/** Feature routes are added to this list (one entry or a few per feature). */
export const routes: RouteRecordRaw[] = [
  { path: '/', name: 'home', component: HomeView, meta: { title: 'nav.home' } },
  {
    path: '/login', name: 'login', component: () => import('@/views/LoginView.vue'),
    meta: { guestOnly: true, title: 'auth.loginTitle' },
  },
  {
    path: '/register', name: 'register', component: () => import('@/views/RegisterView.vue'),
    meta: { guestOnly: true, title: 'auth.registerTitle' },
  },
  {
    path: '/settings/profile', name: 'settings-profile', component: () => import('@/views/ProfileEditView.vue'),
    meta: { requiresAuth: true, title: 'profile.title' },
  },
  {
    path: '/u/:username', name: 'user', component: () => import('@/views/UserProfileView.vue'), props: true,
  },
  {
    // ?from=<image id>: start from that image's settings (a remix).
    path: '/generate', name: 'generate', component: () => import('@/views/GenerateView.vue'),
    meta: { requiresAuth: true, title: 'generate.title' },
  },
  {
    path: '/studio', name: 'studio', component: () => import('@/views/StudioView.vue'),
    meta: { requiresAuth: true, title: 'studio.title' },
  },
  {
    path: '/stylize', name: 'stylize', component: () => import('@/views/StylizeView.vue'),
    meta: { requiresAuth: true, title: 'stylize.title' },
  },
  {
    // A share link: public, no account needed.
    path: '/s/:id([A-Za-z0-9_-]{12})', name: 'share', component: () => import('@/views/ShareView.vue'), props: true,
    meta: { title: 'share.pageTitle' },
  },
  {
    // ?sort=top&period=week&feed=following&tag=…&model=…
    path: '/live', name: 'live', component: () => import('@/views/LiveView.vue'),
    meta: { title: 'live.title' },
  },
  {
    path: '/gallery', name: 'gallery', component: () => import('@/views/GalleryView.vue'),
    meta: { title: 'gallery.title' },
  },
  {
    path: '/p/:id(\\d+)', name: 'post', component: () => import('@/views/PostView.vue'), props: true,
    meta: { title: 'post.pageTitle' },
  },
  {
    path: '/moderation', name: 'moderation', component: () => import('@/views/ModerationView.vue'),
    meta: { requiresAuth: true, requiresModerator: true, title: 'moderation.title' },
  },
  {
    path: '/rooms/:room?', name: 'rooms', component: () => import('@/views/RoomsView.vue'), props: true,
    meta: { title: 'rooms.title', fillHeight: true },
  },
  { path: '/models', name: 'models', component: () => import('@/views/ModelsView.vue'), meta: { title: 'hub.title' } },
  {
    path: '/models/new', name: 'model-new', component: () => import('@/views/ModelUploadView.vue'),
    meta: { requiresAuth: true, title: 'hub.newModel' },
  },
  {
    path: '/models/:id(\\d+)', name: 'model', component: () => import('@/views/ModelDetailView.vue'), props: true,
    meta: { title: 'hub.title' },
  },
  {
    path: '/models/:id(\\d+)/upload', name: 'model-upload', component: () => import('@/views/ModelUploadView.vue'),
    props: true, meta: { requiresAuth: true, title: 'hub.upload' },
  },
  {
    path: '/collab', name: 'collab', component: () => import('@/views/CollabListView.vue'),
    meta: { requiresAuth: true, title: 'collab.title' },
  },
  {
    path: '/collab/join/:token', name: 'collab-join', component: () => import('@/views/CollabJoinView.vue'), props: true,
    meta: { requiresAuth: true, title: 'collab.title' },
  },
  {
    path: '/collab/:id([0-9a-f]{32})', name: 'collab-session', component: () => import('@/views/CollabSessionView.vue'), props: true,
    meta: { requiresAuth: true, title: 'collab.title' },
  },
  {
    path: '/:pathMatch(.*)*', name: 'not-found', component: () => import('@/views/NotFoundView.vue'),
    meta: { title: 'notFound.title' },
  },
]

export const router = createRouter({
  history: createWebHistory(import.meta.env.BASE_URL),
  routes,
  scrollBehavior: (_to, _from, saved) => saved ?? { top: 0 },
})

router.beforeEach(async (to) => {
  const session = useSessionStore()
  try {
    await session.load()
  } catch {
    // The server is unreachable: let public pages render; guarded ones go to login below.
  }
  if (to.meta.requiresAuth && !session.signedIn) {
    return { name: 'login', query: { next: to.fullPath } }
  }
  if (to.meta.requiresModerator && !session.user?.is_moderator) {
    return { name: 'home' }
  }
  if (to.meta.guestOnly && session.signedIn) {
    return safeNext(to.query.next)
  }
  return true
})
