/**
 * The text a terminal recording printed, for readers without JavaScript (and for search in the
 * page): the "o" events of an asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/) with
 * escape sequences and control characters taken out. A reading aid, not a terminal emulator:
 * cursor movement and full-screen programs come out as the characters they drew.
 */

// ECMA-48: CSI (ESC [ … final byte), OSC (ESC ] … BEL or ST), and two-byte escapes.
const CSI = /\x1b\[[0-?]*[ -/]*[@-~]/g;
const OSC = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g;
const OTHER_ESCAPE = /\x1b[@-_]/g;
// C0 controls other than tab and newline, and DEL.
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;

export function castText(cast: string, maxChars = 200_000): { text: string; truncated: boolean } {
  let output = "";
  let truncated = false;
  const lines = cast.split("\n");
  for (const line of lines.slice(1)) {
    if (line.trim() === "") continue;
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch {
      continue; // a cast cut short mid-line; the rest still reads
    }
    if (!Array.isArray(event) || event[1] !== "o" || typeof event[2] !== "string") continue;
    output += event[2];
    if (output.length > maxChars * 2) {
      truncated = true;
      break;
    }
  }
  let text = output
    .replace(OSC, "")
    .replace(CSI, "")
    .replace(OTHER_ESCAPE, "")
    .replace(/\r+\n/g, "\n")
    .replace(/\r/g, "\n")
    .replace(CONTROL, "");
  if (text.length > maxChars) {
    text = text.slice(0, maxChars);
    truncated = true;
  }
  return { text, truncated };
}
