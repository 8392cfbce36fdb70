/**
 * Characters a reader cannot see, or that change how the text around them is shown: control
 * characters (but tab, line feed and carriage return), bidirectional embeddings, overrides and
 * isolates (the "Trojan Source" characters, CVE-2021-42574), zero-width and other invisible
 * format characters, Unicode tags and the variation selectors of the supplement (used to smuggle
 * data). A statement an approver is asked to approve shows them as `⟨U+202E⟩` instead, so what
 * they read is what would run. (U+FE0F, which turns a character into an emoji, is left alone.)
 */
const HIDDEN =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u2028-\u202E\u2060-\u206F\u3164\uFEFF\uFFA0\uFFF0-\uFFFB]|[\u{E0000}-\u{E0FFF}]|[\u{1D173}-\u{1D17A}]/u;
const HIDDEN_ALL = new RegExp(HIDDEN.source, "gu");

export function isHidden(char: string): boolean {
  return HIDDEN.test(char);
}

/** How a hidden character is shown: `⟨U+202E⟩`. */
export function hiddenMarker(char: string): string {
  return `⟨U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}⟩`;
}

/** The text with every hidden character shown as its marker. */
export function showHidden(text: string): string {
  return text.replace(HIDDEN_ALL, hiddenMarker);
}

export function countHidden(text: string): number {
  return text.match(HIDDEN_ALL)?.length ?? 0;
}

/** The text split into what is shown as it is and the hidden characters, in order (for HTML that marks them). */
export function splitHidden(text: string): { text: string; hidden: boolean }[] {
  const parts: { text: string; hidden: boolean }[] = [];
  let last = 0;
  for (const match of text.matchAll(HIDDEN_ALL)) {
    if (match.index > last) parts.push({ text: text.slice(last, match.index), hidden: false });
    parts.push({ text: match[0], hidden: true });
    last = match.index + match[0].length;
  }
  if (last < text.length) parts.push({ text: text.slice(last), hidden: false });
  return parts;
}

/** The sentence that tells a reader hidden characters are shown as markers. */
export function hiddenNotice(count: number): string {
  return `⚠️ ${count} invisible or direction-changing character${count === 1 ? " is" : "s are"} shown as ⟨U+…⟩.`;
}
