/**
 * Binds a Yjs document to a collaborative session over the app's one WebSocket.
 *
 * The bytes are the stock y-protocols messages (sync step 1/2, update, awareness), sent in
 * `collab.update {session, data}` and received in `collab.sync` / `collab.update` on
 * `collab:<id>` (docs/PROTOCOL.md). This is the y-websocket provider's logic on our socket:
 * sync step 1 on every (re)subscription, answer the server's step 1, send local changes, apply
 * remote ones. Local edits are coalesced for a few milliseconds (Y.mergeUpdates) and awareness is
 * throttled, so holding a key down stays well under the server's per-member message limit.
 */

import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as syncProtocol from 'y-protocols/sync'
import * as awarenessProtocol from 'y-protocols/awareness'
import { realtime, type ServerEvent, type Subscription } from '@/realtime/socket'
import { collabTopic } from '@/api/collab'

const MESSAGE_SYNC = 0
const MESSAGE_AWARENESS = 1
/** Local edits made within this window leave as one update. */
const UPDATE_COALESCE_MS = 40
/** Cursor moves leave at most this often. */
const AWARENESS_THROTTLE_MS = 120

export interface ProviderCallbacks {
  /** Other events of the session topic: collab.members, collab.render, collab.removed, collab.closed. */
  onEvent?(event: ServerEvent): void
  /** The first sync with the server finished (the document is complete). */
  onSynced?(): void
  onError?(code: string, message: string): void
}

export class CollabProvider {
  readonly doc = new Y.Doc()
  readonly awareness = new awarenessProtocol.Awareness(this.doc)
  readonly prompt = this.doc.getText('prompt')
  readonly negative = this.doc.getText('negative_prompt')
  readonly settings = this.doc.getMap<unknown>('settings')
  synced = false

  private readonly sessionId: string
  private canEdit: boolean
  private readonly callbacks: ProviderCallbacks
  private subscription: Subscription | null = null
  private pending: Uint8Array[] = []
  private updateTimer: ReturnType<typeof setTimeout> | null = null
  private awarenessTimer: ReturnType<typeof setTimeout> | null = null
  private awarenessDirty = false
  private resyncTimer: ReturnType<typeof setTimeout> | null = null
  private offError: (() => void) | null = null
  private readonly onDocUpdate = (update: Uint8Array, origin: unknown) => {
    if (origin === this || !this.canEdit) return
    this.pending.push(update)
    this.updateTimer ??= setTimeout(() => this.flushUpdates(), UPDATE_COALESCE_MS)
  }
  private readonly onAwarenessUpdate = ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown) => {
    if (origin === this) return
    if (![...added, ...updated, ...removed].includes(this.doc.clientID)) return
    this.awarenessDirty = true
    this.awarenessTimer ??= setTimeout(() => this.flushAwareness(), AWARENESS_THROTTLE_MS)
  }

  constructor(sessionId: string, canEdit: boolean, callbacks: ProviderCallbacks = {}) {
    this.sessionId = sessionId
    this.canEdit = canEdit
    this.callbacks = callbacks
    this.doc.on('update', this.onDocUpdate)
    this.awareness.on('update', this.onAwarenessUpdate)
  }

  connect(): void {
    // A refused edit (too many too fast) stays only here; syncing again after the wait sends it:
    // the server answers our step 1 with its own, and our step 2 carries what it lacks.
    this.offError = realtime.onError((err) => {
      if (err.code !== 'rate_limited' || this.resyncTimer) return
      this.resyncTimer = setTimeout(() => {
        this.resyncTimer = null
        this.sendSyncStep1()
      }, (err.retryAfter ?? 1) * 1000)
    })
    this.subscription = realtime.subscribe(collabTopic(this.sessionId), {
      onSubscribed: () => this.sendSyncStep1(),
      onEvent: (event) => this.handle(event),
      onError: (err) => this.callbacks.onError?.(err.code, err.message),
    })
  }

  /** A role change (an invitation accepted again) may turn a viewer into an editor. */
  setCanEdit(canEdit: boolean): void {
    const gained = canEdit && !this.canEdit
    this.canEdit = canEdit
    if (gained) this.sendSyncStep1()
  }

  setUser(user: { id: number; name: string; color: string; colorLight: string }): void {
    this.awareness.setLocalStateField('user', user)
  }

  private send(data: Uint8Array): void {
    realtime.send({ op: 'collab.update', session: this.sessionId, data })
  }

  private sendSyncStep1(): void {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_SYNC)
    syncProtocol.writeSyncStep1(encoder, this.doc)
    this.send(encoding.toUint8Array(encoder))
    // Tell the others we are (back): our cursor and name.
    if (this.awareness.getLocalState() !== null) this.sendAwareness([this.doc.clientID])
  }

  private flushUpdates(): void {
    this.updateTimer = null
    if (!this.pending.length) return
    const update = this.pending.length === 1 ? this.pending[0] : Y.mergeUpdates(this.pending)
    this.pending = []
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_SYNC)
    syncProtocol.writeUpdate(encoder, update)
    this.send(encoding.toUint8Array(encoder))
  }

  private flushAwareness(): void {
    this.awarenessTimer = null
    if (!this.awarenessDirty) return
    this.awarenessDirty = false
    this.sendAwareness([this.doc.clientID])
  }

  private sendAwareness(clients: number[]): void {
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_AWARENESS)
    encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(this.awareness, clients))
    this.send(encoding.toUint8Array(encoder))
  }

  private handle(event: ServerEvent): void {
    if (event.type !== 'collab.sync' && event.type !== 'collab.update') {
      this.callbacks.onEvent?.(event)
      return
    }
    const data = event.data
    if (!(data instanceof Uint8Array)) return
    const decoder = decoding.createDecoder(data)
    const kind = decoding.readVarUint(decoder)
    if (kind === MESSAGE_AWARENESS) {
      awarenessProtocol.applyAwarenessUpdate(this.awareness, decoding.readVarUint8Array(decoder), this)
      return
    }
    if (kind !== MESSAGE_SYNC) return
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, MESSAGE_SYNC)
    const syncType = syncProtocol.readSyncMessage(decoder, encoder, this.doc, this)
    // The server's step 1 asks for what we have and it lacks; viewers have nothing to give.
    if (syncType === syncProtocol.messageYjsSyncStep1 && this.canEdit && encoding.length(encoder) > 1) {
      this.send(encoding.toUint8Array(encoder))
    }
    if (syncType === syncProtocol.messageYjsSyncStep2 && !this.synced) {
      this.synced = true
      this.callbacks.onSynced?.()
    }
  }

  destroy(): void {
    if (this.updateTimer) clearTimeout(this.updateTimer)
    if (this.awarenessTimer) clearTimeout(this.awarenessTimer)
    if (this.resyncTimer) clearTimeout(this.resyncTimer)
    this.offError?.()
    this.flushUpdates()
    this.doc.off('update', this.onDocUpdate)
    this.awareness.off('update', this.onAwarenessUpdate)
    // Our cursor leaves with us (the server also announces it when the socket goes).
    awarenessProtocol.removeAwarenessStates(this.awareness, [this.doc.clientID], 'local')
    this.sendAwareness([this.doc.clientID])
    this.subscription?.unsubscribe()
    this.awareness.destroy()
    this.doc.destroy()
  }
}

/**
 * A stable colour per user, so the same person has the same cursor colour everywhere. Hex, because the
 * server passes only `#rrggbb` / `#rrggbbaa` to other members' editors (they go into `style=`).
 */
export function userColour(id: number): { color: string; colorLight: string } {
  const color = hslToHex((id * 137.508) % 360, 0.7, 0.45)
  return { color, colorLight: `${color}38` } // 0x38: 22 % opaque, for selections
}

function hslToHex(hue: number, saturation: number, lightness: number): string {
  const a = saturation * Math.min(lightness, 1 - lightness)
  const channel = (n: number) => {
    const k = (n + hue / 30) % 12
    const value = lightness - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))
    return Math.round(value * 255).toString(16).padStart(2, '0')
  }
  return `#${channel(0)}${channel(8)}${channel(4)}`
}
