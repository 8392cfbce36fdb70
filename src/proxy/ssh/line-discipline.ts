/**
 * A shadow of the line the user is typing into a remote shell, so the proxy can classify it when
 * Enter is pressed. Pure: bytes in, events out; no sockets, no timers.
 *
 * Keystrokes are forwarded as they arrive (the remote shell echoes them, completes them, edits
 * them); only the line terminator is held back and handed to the caller, which decides whether it
 * goes through. The shadow follows the editing keys of readline's emacs mode that do not need the
 * shell's state: printable text, backspace, Ctrl-U/K/W/A/E/B/F, Ctrl-C, the arrow keys left and
 * right, Home, End and Delete. Keys whose effect only the shell knows (history with Up/Down or
 * Ctrl-R/P/N, undo with Ctrl-_, Ctrl-O, any other control key it does not model, and Tab
 * completion whose echo is not plain text) make the line *uncertain*: the
 * caller gets the text it saw and `certain: false`, and should not trust it.
 *
 * Inside full-screen programs (the alternate screen, as vim, less and top use it) typed lines are
 * usually not commands to the shell; but the target's output alone says it is in one, and a shell
 * can print the same bytes (`printf '\e[?1049h'`). Lines are still reported, marked `fullScreen`.
 */

export type LineEvent =
  /** Bytes to send upstream now. */
  | { type: "forward"; data: Buffer }
  /**
   * Enter was pressed on `text`. `terminator` (the Enter key's bytes) has not been forwarded: the
   * caller sends it when the line may run, or `INTERRUPT` to discard the line in the shell.
   */
  | { type: "line"; text: string; certain: boolean; hidden: boolean; fullScreen: boolean; terminator: Buffer };

/** Ctrl-C: the shell discards the line being edited (readline's SIGINT handling). */
export const INTERRUPT = Buffer.from([0x03]);

const ESC = 0x1b;
/** The longest escape sequence we keep collecting before giving up on it (bytes). */
const MAX_ESCAPE = 32;
/** A line longer than this is not a command anyone types; it is kept uncertain, not grown. */
const MAX_LINE = 16_384;
/** What stays of the output's last line, to spot a password prompt. */
const PROMPT_TAIL = 256;

// xterm's alternate screen: DECSET 1049 / 1047 / 47 (https://invisible-island.net/xterm/ctlseqs/ctlseqs.html).
const ALT_SCREEN = /\x1b\[\?(?:1049|1047|47)([hl])/g;
const PASSWORD_PROMPT = /(?:password|passphrase|passcode|\bPIN\b)[^\n]*:\s*$/i;

export class LineDiscipline {
  /** The line as code points, and the cursor within it. */
  #line: string[] = [];
  #cursor = 0;
  #certain = true;
  #escape: number[] | undefined;
  #pending: number[] = [];
  readonly #decoder = new TextDecoder("utf-8", { fatal: false });
  #awaitingCompletion = false;
  #fullScreen = false;
  #outputTail = "";
  #hidden = false;
  /** The target echoed what was typed after a password prompt: it is not a hidden answer. */
  #echoed = false;
  /** The last chunk ended with a "\r" line end (a "\n" may follow in the next one). */
  #endedWithCr = false;
  /** Inside a bracketed paste (ESC[200~ … ESC[201~) text is literal. */
  #pasting = false;

  /** Whether a full-screen program has the terminal (no lines are reported then). */
  get fullScreen(): boolean {
    return this.#fullScreen;
  }

  /** Whether the current input answers a password prompt (not echoed; not to be recorded). */
  get hidden(): boolean {
    return this.#hidden;
  }

  /** The line as the shadow has it now (for tests and diagnostics). */
  get current(): { text: string; cursor: number; certain: boolean } {
    return { text: this.#line.join(""), cursor: this.#cursor, certain: this.#certain };
  }

  /** Feeds keystrokes from the user. */
  push(chunk: Buffer): LineEvent[] {
    const events: LineEvent[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (this.#escape) {
        this.#escape.push(byte);
        if (this.#escapeDone()) this.#applyEscape();
        continue;
      }
      if (byte === ESC) {
        this.#flushText();
        this.#escape = [byte];
        continue;
      }
      if (byte === 0x0a && i === 0 && this.#endedWithCr) {
        // The "\n" of a "\r\n" split across chunks: the line is already decided; pass it along.
        this.#endedWithCr = false;
        continue;
      }
      if (byte === 0x0d || byte === 0x0a) {
        this.#flushText();
        if (i > start) events.push({ type: "forward", data: chunk.subarray(start, i) });
        // "\r\n" from a paste is one Enter.
        const end = byte === 0x0d && chunk[i + 1] === 0x0a ? i + 2 : i + 1;
        events.push({
          type: "line",
          text: this.#line.join(""),
          certain: this.#certain && !this.#awaitingCompletion,
          hidden: this.#hidden && !this.#echoed,
          fullScreen: this.#fullScreen,
          terminator: chunk.subarray(i, end),
        });
        this.#reset();
        this.#hidden = false;
        i = end - 1;
        start = end;
        this.#endedWithCr = byte === 0x0d && end === chunk.length;
        continue;
      }
      if (byte < 0x20 || byte === 0x7f) {
        this.#flushText();
        this.#control(byte);
        continue;
      }
      this.#pending.push(byte);
    }
    this.#flushText();
    if (chunk.length > 0 && start < chunk.length) this.#endedWithCr = false;
    if (chunk.length > start) events.push({ type: "forward", data: start === 0 ? chunk : chunk.subarray(start) });
    return events;
  }

  /**
   * Feeds what the remote side printed: it tells whether a full-screen program runs, whether a
   * password prompt waits, and what a Tab completed to.
   */
  output(chunk: Buffer): void {
    const text = chunk.toString("latin1");
    for (const match of text.matchAll(ALT_SCREEN)) this.#fullScreen = match[1] === "h";
    if (this.#awaitingCompletion) {
      this.#awaitingCompletion = false;
      // A unique completion echoes the inserted text (and a bell when ambiguous); anything else
      // (a list of candidates, a redrawn line) is beyond what the shadow can follow.
      const inserted = text.replace(/\x07/g, "");
      if (/^[\x20-\x7e]*$/.test(inserted) && this.#cursor === this.#line.length) this.#insert([...inserted]);
      else this.#certain = false;
    }
    const lastLine = text.lastIndexOf("\n");
    this.#outputTail = (lastLine >= 0 ? text.slice(lastLine + 1) : this.#outputTail + text).slice(-PROMPT_TAIL);
    if (this.#line.length === 0) this.#hidden = PASSWORD_PROMPT.test(this.#outputTail);
    // A real password prompt turns echo off; a prompt that only looks like one (PS1='password: ')
    // echoes the keys back. Masking stars (pwfeedback) are not an echo.
    else if (this.#hidden && /[^*\s]/.test(text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "").replace(/[\x00-\x1f\x7f]/g, ""))) this.#echoed = true;
  }

  #reset(): void {
    this.#echoed = false;
    this.#line = [];
    this.#cursor = 0;
    this.#certain = true;
    this.#awaitingCompletion = false;
  }

  #flushText(): void {
    if (this.#pending.length === 0) return;
    const text = this.#decoder.decode(Uint8Array.from(this.#pending), { stream: true });
    this.#pending = [];
    this.#insert([...text]);
  }

  #insert(chars: string[]): void {
    if (chars.length === 0) return;
    if (this.#line.length + chars.length > MAX_LINE) {
      this.#certain = false;
      return;
    }
    this.#line.splice(this.#cursor, 0, ...chars);
    this.#cursor += chars.length;
  }

  #control(byte: number): void {
    switch (byte) {
      case 0x7f: // DEL, what terminals send for Backspace
      case 0x08: // Ctrl-H
        if (this.#cursor > 0) {
          this.#line.splice(this.#cursor - 1, 1);
          this.#cursor -= 1;
        }
        return;
      case 0x15: // Ctrl-U: kill to the start of the line
        this.#line.splice(0, this.#cursor);
        this.#cursor = 0;
        return;
      case 0x0b: // Ctrl-K: kill to the end
        this.#line.splice(this.#cursor);
        return;
      case 0x17: {
        // Ctrl-W: kill the whitespace-delimited word before the cursor
        let from = this.#cursor;
        while (from > 0 && /\s/.test(this.#line[from - 1]!)) from--;
        while (from > 0 && !/\s/.test(this.#line[from - 1]!)) from--;
        this.#line.splice(from, this.#cursor - from);
        this.#cursor = from;
        return;
      }
      case 0x03: // Ctrl-C: the shell discards the line
        this.#reset();
        return;
      case 0x01: // Ctrl-A
        this.#cursor = 0;
        return;
      case 0x05: // Ctrl-E
        this.#cursor = this.#line.length;
        return;
      case 0x02: // Ctrl-B
        this.#cursor = Math.max(0, this.#cursor - 1);
        return;
      case 0x06: // Ctrl-F
        this.#cursor = Math.min(this.#line.length, this.#cursor + 1);
        return;
      case 0x04: // Ctrl-D: delete under the cursor (EOF on an empty line)
        this.#line.splice(this.#cursor, 1);
        return;
      case 0x09: // Tab: completion; its echo tells what it inserted
        this.#awaitingCompletion = true;
        return;
      case 0x10: // Ctrl-P, Ctrl-N, Ctrl-R, Ctrl-S, Ctrl-Y, Ctrl-T, Ctrl-X: history, yank, transpose …
      case 0x0e:
      case 0x12:
      case 0x13:
      case 0x19:
      case 0x14:
      case 0x18:
      case 0x16: // Ctrl-V: the next key is literal
        this.#certain = false;
        return;
      case 0x0d: // Enter inside a full-screen program: not a shell line
      case 0x0a:
        this.#reset();
        return;
      case 0x0c: // Ctrl-L: redraw
      case 0x1a: // Ctrl-Z, Ctrl-\: signals, no effect on the line
      case 0x1c:
        return;
      default:
        // Ctrl-_ (undo), Ctrl-O (operate-and-get-next), Ctrl-] (search), Ctrl-@ (mark), Ctrl-G …:
        // keys whose effect on the line only the shell knows.
        this.#certain = false;
        return;
    }
  }

  #escapeDone(): boolean {
    const seq = this.#escape!;
    if (seq.length > MAX_ESCAPE) return true;
    if (seq.length < 2) return false;
    const second = seq[1]!;
    if (second === 0x5b /* [ */) return seq.length >= 3 && seq[seq.length - 1]! >= 0x40 && seq[seq.length - 1]! <= 0x7e;
    if (second === 0x4f /* O */) return seq.length >= 3;
    return true; // ESC <key>: Meta (Alt) + key
  }

  #applyEscape(): void {
    const seq = Buffer.from(this.#escape!).toString("latin1");
    this.#escape = undefined;
    switch (seq) {
      case "\x1b[C":
      case "\x1bOC":
        this.#cursor = Math.min(this.#line.length, this.#cursor + 1);
        return;
      case "\x1b[D":
      case "\x1bOD":
        this.#cursor = Math.max(0, this.#cursor - 1);
        return;
      case "\x1b[H":
      case "\x1bOH":
      case "\x1b[1~":
      case "\x1b[7~":
        this.#cursor = 0;
        return;
      case "\x1b[F":
      case "\x1bOF":
      case "\x1b[4~":
      case "\x1b[8~":
        this.#cursor = this.#line.length;
        return;
      case "\x1b[3~":
        this.#line.splice(this.#cursor, 1);
        return;
      case "\x1b[200~":
        this.#pasting = true;
        return;
      case "\x1b[201~":
        this.#pasting = false;
        return;
      case "\x1b[I": // focus in/out reports
      case "\x1b[O":
        return;
      default:
        // Up/Down (history), Alt-. (last argument), Alt-B/F/D and the rest: only the shell knows.
        this.#certain = false;
    }
  }

  /** Whether a bracketed paste is in progress (its newlines still end lines). */
  get pasting(): boolean {
    return this.#pasting;
  }
}
