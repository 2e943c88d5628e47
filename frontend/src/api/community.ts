/** Follows, notifications, reports and the moderators' queue (docs/openapi.yaml). */

import { http, requestWithStatus } from './http'
import type {
  FollowState, ModerationPage, NotificationPage, Report, ReportKind, ReportReason, ReportStatus, User, UserStats,
} from './types'

export const REPORT_DETAILS_MAX_CHARS = 1000

/** A public profile with its counts; rejects with ApiError 404 when there is no such user. */
export function fetchProfile(username: string): Promise<{ user: User; stats: UserStats }> {
  return http.get<{ user: User; stats: UserStats }>(`/api/users/${encodeURIComponent(username)}`)
}

export function setFollowing(username: string, following: boolean): Promise<FollowState> {
  const path = `/api/users/${encodeURIComponent(username)}/follow`
  return following ? http.put<FollowState>(path, {}) : http.delete<FollowState>(path)
}

export function fetchNotifications(before?: number | null): Promise<NotificationPage> {
  return http.get<NotificationPage>(before != null ? `/api/notifications?before=${before}` : '/api/notifications')
}

/** Marks these (or, without ids, all) read; resolves with the unread count after. */
export async function markRead(ids?: number[]): Promise<number> {
  return (await http.post<{ unread: number }>('/api/notifications/read', ids ? { ids } : {})).unread
}

export interface ReportResult {
  report: Report
  /** False when I had already reported it (the server keeps my first report). */
  created: boolean
}

export async function sendReport(kind: ReportKind, target: string | number, reason: ReportReason, details: string): Promise<ReportResult> {
  const { status, data } = await requestWithStatus<{ report: Report }>('POST', '/api/reports', {
    json: { kind, target, reason, details },
  })
  return { report: data.report, created: status === 201 }
}

export function fetchModerationQueue(status: ReportStatus, before?: number | null): Promise<ModerationPage> {
  const query = new URLSearchParams({ status })
  if (before != null) query.set('before', String(before))
  return http.get<ModerationPage>(`/api/moderation/reports?${query}`)
}

export type ModerationAction = 'hide' | 'restore' | 'dismiss'

export async function moderate(kind: ReportKind, target: string, action: ModerationAction): Promise<number> {
  return (await http.post<{ reports_closed: number }>(
    `/api/moderation/${kind}/${encodeURIComponent(target)}/${action}`)).reports_closed
}
