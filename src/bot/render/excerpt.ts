import { countHidden, hiddenMarker, hiddenNotice, isHidden, showHidden } from "../../infra/visible-text.js";
import type { FullTextSource } from "../view-model.js";

/**
 * What a renderer does with preformatted text (a held statement or command) that its platform
 * cannot show in one block: the start and the end, each within the block's limit, and a plain
 * notice of how much is left out and where the whole of it can be read. Nothing is cut silently:
 * an approver must know that what they read is not all that would run. Characters a reader cannot
 * see (bidi overrides, zero-width characters, controls) are shown as `⟨U+…⟩`, with a notice.
 *
 * Counts are in characters (Unicode code points) of the text itself, as a person reads them; a cut
 * never splits a surrogate pair.
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

/** Code as a renderer shows it: one part, or the start and the end with what is between them. */
export interface PresentedCode {
  /** The whole, or the start and the end; hidden characters already shown as markers. */
  parts: string[];
  /** Plain text above the code: that it is cut, and hidden characters, when either is so. */
  notice: string | undefined;
  /** The page with all of it, when the code is cut and there is one (to link after the notice). */
  url: string | null;
  /** Between the two parts: how many characters are not shown. */
  gap: string | undefined;
}

/**
 * Fits `code` in blocks of `budget` (`cost` is what one character costs once rendered, before its
 * hidden-character marker is accounted for).
 */
export function presentCode(code: string, budget: number, cost: (char: string) => number, source: FullTextSource | undefined): PresentedCode {
  const markerCost = (char: string) => (isHidden(char) ? Array.from(hiddenMarker(char)).reduce((n, c) => n + cost(c), 0) : cost(char));
  const shown = excerpt(code, budget, markerCost);
  const hidden = countHidden(code);
  const hiddenLine = hidden > 0 ? ` ${hiddenNotice(hidden)}` : "";
  if (shown.whole) {
    return { parts: [showHidden(code)], notice: hidden > 0 ? hiddenNotice(hidden) : undefined, url: null, gap: undefined };
  }
  const omitted = shown.totalChars - shown.headChars - shown.tailChars;
  const where = source?.url
    ? " Read the whole text before you decide:"
    : ` The whole text is in the audit log${source ? ` (${source.reference})` : ""}.`;
  return {
    parts: [showHidden(shown.head), showHidden(shown.tail)],
    notice:
      `✂️ Too long to show here in full: showing the first ${shown.headChars} and last ${shown.tailChars} of ${shown.totalChars} characters` +
      (omitted > 0 ? ` (${omitted} in between are not shown).` : " (in two parts).") +
      hiddenLine +
      where,
    url: source?.url ?? null,
    gap: `✂️ … ${omitted} characters not shown … the last ${shown.tailChars}:`,
  };
}
