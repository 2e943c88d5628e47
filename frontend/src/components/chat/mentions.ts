/** Splitting message text into plain runs and @mentions, for rendering as text (never as HTML). */

/**
 * The server's rule (server/chat.py MENTION_RE): not after a word character or another @.
 * Python's `\w` is Unicode-aware, so "你好@bob" is no mention there; `\p{L}\p{N}` says the same here.
 */
const MENTION_RE = /(?<![\p{L}\p{N}_@])@([a-zA-Z0-9_]{3,32})/gu

export interface TextPart {
  text: string
  /** The mentioned username (lower-case) when this part is a mention of an existing user. */
  mention?: string
}

/** `mentions` are the usernames the server resolved; other @words stay plain text. */
export function splitMentions(text: string, mentions: readonly string[]): TextPart[] {
  const known = new Set(mentions.map((m) => m.toLowerCase()))
  const parts: TextPart[] = []
  let last = 0
  for (const match of text.matchAll(MENTION_RE)) {
    const username = match[1]!.toLowerCase()
    if (!known.has(username)) continue
    if (match.index > last) parts.push({ text: text.slice(last, match.index) })
    parts.push({ text: match[0], mention: username })
    last = match.index + match[0].length
  }
  if (last < text.length) parts.push({ text: text.slice(last) })
  return parts
}
