/**
 * Terminal recordings in asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a JSON
 * header line, then one `[time, code, data]` line per event — "o" output, "i" input, "r" resize
 * ("COLSxROWS"), "m" marker. What `asciinema play` and `jitgate replay` read.
 */

export interface CastHeader {
  version: 2;
  width: number;
  height: number;
  /** Unix seconds at the start. */
  timestamp: number;
  title?: string;
  env?: { TERM?: string; SHELL?: string };
}

export type CastEvent = [time: number, code: "o" | "i" | "r" | "m", data: string];

/** One cast is kept in memory until the session ends: beyond this it is truncated (with a marker). */
export const MAX_CAST_BYTES = 32 * 1024 * 1024;

export class AsciicastRecorder {
  readonly #lines: string[] = [];
  readonly #start: number;
  readonly #output = new TextDecoder("utf-8");
  readonly #input = new TextDecoder("utf-8");
  #bytes = 0;
  #truncated = false;

  constructor(
    header: { width: number; height: number; term?: string | undefined; title?: string | undefined },
    private readonly options: { now?: () => number; maxBytes?: number } = {},
  ) {
    this.#start = this.#now();
    const cast: CastHeader = {
      version: 2,
      width: Math.max(1, header.width || 80),
      height: Math.max(1, header.height || 24),
      timestamp: Math.floor(this.#start / 1000),
      ...(header.title ? { title: header.title } : {}),
      ...(header.term ? { env: { TERM: header.term } } : {}),
    };
    this.#push(JSON.stringify(cast));
  }

  #now(): number {
    return this.options.now?.() ?? Date.now();
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  /** The size of the cast so far, in characters. */
  get size(): number {
    return this.#bytes;
  }

  output(chunk: Buffer): void {
    this.#event("o", this.#output.decode(chunk, { stream: true }));
  }

  input(chunk: Buffer | string): void {
    this.#event("i", typeof chunk === "string" ? chunk : this.#input.decode(chunk, { stream: true }));
  }

  resize(cols: number, rows: number): void {
    this.#event("r", `${cols}x${rows}`);
  }

  marker(label: string): void {
    this.#event("m", label);
  }

  #event(code: CastEvent[1], data: string): void {
    if (this.#truncated || data === "") return;
    const time = Math.round(this.#now() - this.#start) / 1000;
    const line = JSON.stringify([time, code, data]);
    if (this.#bytes + line.length > (this.options.maxBytes ?? MAX_CAST_BYTES)) {
      this.#truncated = true;
      this.#push(JSON.stringify([time, "m", "jitgate: recording truncated (size limit)"]));
      return;
    }
    this.#push(line);
  }

  #push(line: string): void {
    this.#lines.push(line);
    this.#bytes += line.length + 1;
  }

  /** The cast as newline-delimited JSON, ending with a newline. */
  toString(): string {
    return `${this.#lines.join("\n")}\n`;
  }
}

export function parseCast(text: string): { header: CastHeader; events: CastEvent[] } {
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  const [first, ...rest] = lines;
  if (first === undefined) throw new Error("empty recording");
  const header = JSON.parse(first) as CastHeader;
  if (header.version !== 2) throw new Error(`not an asciicast v2 recording (version ${String(header.version)})`);
  return { header, events: rest.map((line) => JSON.parse(line) as CastEvent) };
}

/**
 * Plays a cast's output to `write` with its timing divided by `speed`; pauses longer than
 * `maxPauseMs` (at speed) are shortened to it, as asciinema's idle limit does.
 */
export async function playCast(
  text: string,
  write: (data: string) => void,
  options: { speed?: number; maxPauseMs?: number; sleep?: (ms: number) => Promise<void> } = {},
): Promise<void> {
  const { events } = parseCast(text);
  const speed = options.speed && options.speed > 0 ? options.speed : 1;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  let previous = 0;
  for (const [time, code, data] of events) {
    if (code !== "o") continue;
    const pause = Math.min(((time - previous) * 1000) / speed, options.maxPauseMs ?? 2_000);
    if (pause > 0) await sleep(pause);
    previous = time;
    write(data);
  }
}
