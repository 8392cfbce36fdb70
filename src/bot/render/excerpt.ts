import type { FullTextSource } from "../view-model.js";

/**
 * What a renderer does with preformatted text (a held statement or command) that its platform
 * cannot show in one block: the start and the end, each within the block's limit, and a plain
 * notice of how much is left out and where the whole of it can be read. Nothing is cut silently:
 * an approver must know that what they read is not all that would run.
 *
 * Counts are in characters (Unicode code points), as a person reads them; a cut never splits a
 * surrogate pair.
 */

export type Excerpt =
  | { whole: true; text: string }
  | { whole: false; head: string; tail: string; headChars: number; tailChars: number; totalChars: number };

/**
 * The whole text when its rendered size (`cost` per character, summed) is at most `budget`;
 * otherwise the longest start and the longest end that each fit in `budget`, not overlapping.
 */
export function excerpt(text: string, budget: number, cost: (char: string) => number = (char) => char.length): Excerpt {
  const chars = Array.from(text);
  let total = 0;
  for (const char of chars) total += cost(char);
  if (total <= budget) return { whole: true, text };
  let headEnd = 0;
  for (let used = 0; headEnd < chars.length && used + cost(chars[headEnd]!) <= budget; headEnd++) used += cost(chars[headEnd]!);
  let tailStart = chars.length;
  for (let used = 0; tailStart > headEnd && used + cost(chars[tailStart - 1]!) <= budget; tailStart--) used += cost(chars[tailStart - 1]!);
  return {
    whole: false,
    head: chars.slice(0, headEnd).join(""),
    tail: chars.slice(tailStart).join(""),
    headChars: headEnd,
    tailChars: chars.length - tailStart,
    totalChars: chars.length,
  };
}

/** The notice above a cut text: how much is shown, and where to read all of it. */
export function excerptNotice(cut: Extract<Excerpt, { whole: false }>, source: FullTextSource | undefined): { text: string; url: string | null } {
  const omitted = cut.totalChars - cut.headChars - cut.tailChars;
  const text =
    `✂️ Too long to show here in full: showing the first ${cut.headChars} and last ${cut.tailChars} of ${cut.totalChars} characters` +
    (omitted > 0 ? ` (${omitted} in between are not shown).` : " (in two parts).") +
    (source?.url
      ? " Read the whole text before you approve:"
      : ` The whole text is in the audit log${source ? ` (${source.reference})` : ""}; read it there before you approve.`);
  return { text, url: source?.url ?? null };
}
