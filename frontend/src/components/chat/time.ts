/** Times and days as chat shows them, in the reader's language. */

export function formatClock(iso: string, locale: string): string {
  const date = new Date(iso)
  return Number.isNaN(date.getTime()) ? '' : new Intl.DateTimeFormat(locale, { timeStyle: 'short' }).format(date)
}

export function formatFull(iso: string, locale: string): string {
  const date = new Date(iso)
  return Number.isNaN(date.getTime())
    ? iso
    : new Intl.DateTimeFormat(locale, { dateStyle: 'full', timeStyle: 'short' }).format(date)
}

/** A local calendar day, for grouping messages under day dividers. */
export function dayKey(iso: string): string {
  const date = new Date(iso)
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`
}

export function formatDay(iso: string, locale: string, labels: { today: string; yesterday: string }): string {
  const date = new Date(iso)
  const today = new Date()
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1)
  if (dayKey(iso) === dayKey(today.toISOString())) return labels.today
  if (dayKey(iso) === dayKey(yesterday.toISOString())) return labels.yesterday
  return new Intl.DateTimeFormat(locale, { dateStyle: 'long' }).format(date)
}
