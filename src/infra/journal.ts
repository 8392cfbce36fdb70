import { close, closeSync, fdatasync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { open as openFile, rename, rmdir, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";

/**
 * A local append-only journal of opaque records, on this machine's disk.
 *
 * Records are framed `[u32 length][u32 crc32(length ‖ payload)][payload]` (big-endian). The CRC
 * covers the length, so a tail of zeros (what some file systems show after a machine crash) or a
 * half-written record fails its check: reading stops there and the tail is cut, never misread.
 *
 * Group commit: every record appended during one event-loop turn goes out in one write; records
 * appended while a write is in flight form the next one. With `fsync: "always"` a durable append
 * resolves after the group's fdatasync; with `"interval"` once the write is done (the OS has the
 * bytes: a process crash loses nothing) and fdatasync runs every `intervalMs`.
 *
 * Positions are global byte offsets: a segment file is named after the offset of its first byte,
 * so a position names one place in the journal for its whole life, across rotations. What has
 * been consumed (shipped) is a checkpoint file; fully shipped segments are deleted.
 */

export type FsyncMode = "always" | "interval";

export interface JournalOptions {
  dir: string;
  fsync: FsyncMode;
  intervalMs: number;
  /** Cap on unshipped bytes: capped appends beyond it are refused with JournalFullError. */
  maxBytes: number;
  /** A segment is closed and a new one begun once it is this large (default: maxBytes / 8, at least 64 KiB). */
  segmentBytes?: number;
  /** Errors of work nobody awaits (interval fdatasync, uncapped appends' writes). */
  onError?: (error: unknown) => void;
}

/** What the journal did, for tests and metrics: writes, fdatasyncs, records. */
export interface JournalStats {
  writes: number;
  syncs: number;
  records: number;
}

export class JournalFullError extends Error {
  readonly code = "journal_full";
  constructor(
    readonly unshippedBytes: number,
    readonly maxBytes: number,
    message = `the audit journal is full (${unshippedBytes} of ${maxBytes} bytes not yet shipped to the database)`,
  ) {
    super(message);
  }
}

/** The journal's directory is locked by another live gateway. */
export class JournalLockedError extends Error {
  readonly code = "journal_locked";
}

export class JournalClosedError extends Error {
  readonly code = "journal_closed";
  constructor(why = "the audit journal is closed") {
    super(why);
  }
}

const HEADER = 8;
const SEGMENT = /^(\d{20})\.journal$/;
const CHECKPOINT = "shipped";
const LOCK = "lock";
/** Journals open in this process (a second gateway in one process must not share one either). */
const openHere = new Set<string>();

interface Segment {
  start: number;
  /** Bytes in the file (the active segment's grows). */
  size: number;
}

interface Pending {
  frame: Buffer;
  /** Global offset just past this record. */
  end: number;
  durable: boolean;
  resolve?: (() => void) | undefined;
  reject?: ((error: unknown) => void) | undefined;
}

const segmentName = (start: number) => `${String(start).padStart(20, "0")}.journal`;

function frame(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt32BE(crc32(payload, crc32(out.subarray(0, 4))), 4);
  payload.copy(out, HEADER);
  return out;
}

/**
 * The complete, intact records at the start of `bytes`, and how many bytes they take. Stops at the
 * first record that is incomplete, has a zero length, or fails its CRC.
 */
export function parseRecords(bytes: Buffer, maxRecords = Infinity): { records: Buffer[]; used: number } {
  const records: Buffer[] = [];
  let at = 0;
  while (records.length < maxRecords && bytes.length - at >= HEADER) {
    const length = bytes.readUInt32BE(at);
    if (length === 0 || bytes.length - at - HEADER < length) break;
    const payload = bytes.subarray(at + HEADER, at + HEADER + length);
    if (crc32(payload, crc32(bytes.subarray(at, at + 4))) !== bytes.readUInt32BE(at + 4)) break;
    records.push(payload);
    at += HEADER + length;
  }
  return { records, used: at };
}

export class FileJournal {
  readonly stats: JournalStats = { writes: 0, syncs: 0, records: 0 };
  /** Bytes cut off torn or corrupt tails when the journal was opened. */
  readonly recovered: { cutBytes: number };
  #segments: Segment[];
  #fd: number;
  /** Global offset past the last appended record (written or queued). */
  #end: number;
  /** Global offset past the last written record. */
  #written: number;
  #shipped: number;
  #queue: Pending[] = [];
  #scheduled = false;
  #writing = false;
  #dirty = false;
  #syncTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #broken: Error | undefined;
  /** Set when a capped append was refused; cleared once the shipped backlog is under half the cap. */
  #refusing = false;
  #writtenListeners = new Set<() => void>();
  readonly #segmentBytes: number;

  private constructor(
    private readonly options: JournalOptions,
    state: { segments: Segment[]; fd: number; shipped: number; cutBytes: number },
  ) {
    this.#segments = state.segments;
    this.#fd = state.fd;
    const last = state.segments[state.segments.length - 1]!;
    this.#end = this.#written = last.start + last.size;
    this.#shipped = Math.min(Math.max(state.shipped, state.segments[0]!.start), this.#end);
    this.recovered = { cutBytes: state.cutBytes };
    this.#segmentBytes = options.segmentBytes ?? Math.max(64 * 1024, Math.floor(options.maxBytes / 8));
    if (options.fsync === "interval") {
      this.#syncTimer = setInterval(() => this.#intervalSync(), options.intervalMs);
      this.#syncTimer.unref();
    }
  }

  /**
   * Opens (creating) the journal in `dir`: takes its lock, cuts a torn tail off every segment, and
   * continues after the last intact record.
   */
  static open(options: JournalOptions): FileJournal {
    mkdirSync(options.dir, { recursive: true });
    lock(options.dir);
    try {
      let shipped = 0;
      try {
        const checkpoint = JSON.parse(readFileSync(join(options.dir, CHECKPOINT), "utf8")) as { shipped?: unknown };
        if (typeof checkpoint.shipped === "number" && Number.isSafeInteger(checkpoint.shipped) && checkpoint.shipped >= 0) shipped = checkpoint.shipped;
      } catch {
        // No checkpoint (a new journal) or an unreadable one: ship from the first segment; shipping is idempotent.
      }
      const segments: Segment[] = [];
      let cutBytes = 0;
      for (const name of readdirSync(options.dir).sort()) {
        const match = SEGMENT.exec(name);
        if (!match) continue;
        const path = join(options.dir, name);
        const bytes = readFileSync(path);
        const { used } = parseRecords(bytes);
        if (used < bytes.length) {
          cutBytes += bytes.length - used;
          const fd = openSync(path, "r+");
          try {
            ftruncateSync(fd, used);
          } finally {
            closeSync(fd);
          }
        }
        segments.push({ start: Number(match[1]), size: used });
      }
      // Segments wholly behind the checkpoint were shipped (a crash came before their deletion).
      while (segments.length > 1 && segments[0]!.start + segments[0]!.size <= shipped) {
        unlinkSync(join(options.dir, segmentName(segments.shift()!.start)));
      }
      if (segments.length === 0) {
        const start = Math.max(shipped, 0);
        writeFileSync(join(options.dir, segmentName(start)), "");
        segments.push({ start, size: 0 });
      }
      const last = segments[segments.length - 1]!;
      const fd = openSync(join(options.dir, segmentName(last.start)), "a");
      return new FileJournal(options, { segments, fd, shipped, cutBytes });
    } catch (error) {
      unlock(options.dir);
      throw error;
    }
  }

  get dir(): string {
    return this.options.dir;
  }

  /** Past the last appended record: what a reader waits for to have seen everything up to now. */
  get end(): number {
    return this.#end;
  }

  /** Past the last written record: what a reader may read. */
  get written(): number {
    return this.#written;
  }

  get shipped(): number {
    return this.#shipped;
  }

  get unshippedBytes(): number {
    return this.#end - this.#shipped;
  }

  get maxBytes(): number {
    return this.options.maxBytes;
  }

  /** Why capped appends are refused now, if they are. */
  get refusing(): JournalFullError | undefined {
    return this.#refusing ? new JournalFullError(this.unshippedBytes, this.options.maxBytes) : undefined;
  }

  /**
   * Appends one record to the current group. `durable`: the promise resolves once the record is
   * written (and, with `fsync: always`, synced); otherwise it resolves at once and a failure goes
   * to `onError`. `capped`: refused with JournalFullError when the unshipped backlog would pass
   * `maxBytes` (outcomes of statements already journaled are not capped: they are bounded by them).
   */
  append(payload: Buffer, options: { durable: boolean; capped: boolean }): Promise<void> {
    if (this.#closed) return Promise.reject(new JournalClosedError());
    if (this.#broken) return Promise.reject(this.#broken);
    const framed = frame(payload);
    if (options.capped) {
      if (framed.length > this.options.maxBytes) {
        return Promise.reject(new JournalFullError(this.unshippedBytes, this.options.maxBytes, `a record of ${framed.length} bytes is larger than the audit journal's cap (${this.options.maxBytes} bytes)`));
      }
      if (this.#refusing && this.unshippedBytes <= this.options.maxBytes / 2) this.#refusing = false;
      if (this.#refusing || this.unshippedBytes + framed.length > this.options.maxBytes) {
        this.#refusing = true;
        return Promise.reject(new JournalFullError(this.unshippedBytes, this.options.maxBytes));
      }
    }
    this.#end += framed.length;
    const pending: Pending = { frame: framed, end: this.#end, durable: options.durable };
    const promise = options.durable
      ? new Promise<void>((resolve, reject) => {
          pending.resolve = resolve;
          pending.reject = reject;
        })
      : Promise.resolve();
    this.#queue.push(pending);
    this.stats.records += 1;
    if (!this.#scheduled && !this.#writing) {
      this.#scheduled = true;
      // Everything appended during this turn (promise callbacks included) joins this group.
      setImmediate(() => this.#flush());
    }
    return promise;
  }

  /** Called after each group write (so a reader can ship it). */
  onWritten(listener: () => void): () => void {
    this.#writtenListeners.add(listener);
    return () => this.#writtenListeners.delete(listener);
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#queue.length === 0 || this.#writing) return;
    const group = this.#queue.splice(0);
    this.#writing = true;
    const segment = this.#segments[this.#segments.length - 1]!;
    const bytes = group.length === 1 ? group[0]!.frame : Buffer.concat(group.map((p) => p.frame));
    const done = (error: Error | null) => {
      this.#writing = false;
      if (error) this.#fail(group, segment, error);
      else {
        this.#written = group[group.length - 1]!.end;
        for (const p of group) p.resolve?.();
        for (const listener of this.#writtenListeners) listener();
        if (segment.size >= this.#segmentBytes) this.#rotate();
      }
      if (this.#queue.length > 0) this.#flush();
      else if (this.#closed) this.#whenIdle?.();
    };
    // The write itself is synchronous: a few hundred bytes into the page cache take microseconds,
    // while handing them to libuv's thread pool and back costs two thread wake-ups per group, which
    // on a loaded machine is most of a statement's time. Only fdatasync, which waits for the disk,
    // runs on the pool.
    try {
      for (let offset = 0; offset < bytes.length; ) {
        const count = writeSync(this.#fd, bytes, offset, bytes.length - offset);
        this.stats.writes += 1;
        segment.size += count;
        offset += count;
      }
    } catch (error) {
      done(error as Error);
      return;
    }
    if (this.options.fsync === "always") {
      fdatasync(this.#fd, (syncError) => {
        this.stats.syncs += 1;
        done(syncError);
      });
    } else {
      this.#dirty = true;
      done(null);
    }
  }

  /**
   * A write or sync failed: cut what may have been half-written (a later record must never follow
   * garbage), reject the group, and refuse every append from now on if the cut itself failed.
   */
  #fail(group: Pending[], segment: Segment, error: Error): void {
    const before = group[0]!.end - group[0]!.frame.length;
    const keep = before - segment.start;
    try {
      ftruncateSync(this.#fd, keep);
      segment.size = keep;
      // What was queued behind the group moves back into the cut's place.
      let at = before;
      for (const p of this.#queue) p.end = at += p.frame.length;
      this.#end = at;
    } catch (cutError) {
      this.#broken = new Error(`the audit journal cannot be written: ${(cutError as Error).message}`, { cause: error });
    }
    for (const p of group) {
      if (p.reject) p.reject(error);
      else this.options.onError?.(error);
    }
  }

  #rotate(): void {
    const last = this.#segments[this.#segments.length - 1]!;
    const start = last.start + last.size;
    const fd = openSync(join(this.options.dir, segmentName(start)), "a");
    const old = this.#fd;
    // The old segment's last bytes reach the disk before it is left behind (interval mode syncs only the active one).
    fdatasync(old, () => close(old, () => {}));
    this.#fd = fd;
    this.#segments.push({ start, size: 0 });
  }

  #intervalSync(): void {
    if (!this.#dirty || this.#closed) return;
    this.#dirty = false;
    fdatasync(this.#fd, (error) => {
      this.stats.syncs += 1;
      if (error) this.options.onError?.(error);
    });
  }

  /**
   * Up to `maxRecords` written records from `from` (a position at or after `shipped`), and the
   * position after them. Reads from the disk: the page cache has what was just written.
   */
  async read(from: number, maxRecords: number, maxBytes = 4 * 1024 * 1024): Promise<{ records: Buffer[]; next: number }> {
    const records: Buffer[] = [];
    let at = from;
    for (const segment of this.#segments) {
      const segmentEnd = segment.start + segment.size;
      if (segmentEnd <= at) continue;
      if (at < segment.start) at = segment.start;
      const until = Math.min(segmentEnd, this.#written, at + maxBytes);
      if (until <= at) break;
      const handle = await openFile(join(this.options.dir, segmentName(segment.start)), "r");
      let bytes: Buffer;
      try {
        bytes = Buffer.allocUnsafe(until - at);
        let got = 0;
        while (got < bytes.length) {
          const { bytesRead } = await handle.read(bytes, got, bytes.length - got, at - segment.start + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        bytes = bytes.subarray(0, got);
      } finally {
        await handle.close();
      }
      const parsed = parseRecords(bytes, maxRecords - records.length);
      records.push(...parsed.records);
      at += parsed.used;
      // A record bigger than maxBytes: read it whole on its own.
      if (parsed.used === 0 && bytes.length >= HEADER) {
        const length = bytes.readUInt32BE(0);
        if (HEADER + length > bytes.length && at + HEADER + length <= Math.min(segmentEnd, this.#written)) return this.read(from, maxRecords, HEADER + length);
      }
      if (records.length >= maxRecords || at < segmentEnd) break;
    }
    return { records, next: at };
  }

  /**
   * Everything before `position` is in the database: remember it (a replay after a crash is
   * harmless, so the checkpoint is not synced), delete segments wholly behind it, and accept capped
   * appends again once the backlog is under half the cap.
   */
  async markShipped(position: number): Promise<void> {
    if (position <= this.#shipped) return;
    this.#shipped = position;
    if (this.#refusing && this.unshippedBytes <= this.options.maxBytes / 2) this.#refusing = false;
    const tmp = join(this.options.dir, `${CHECKPOINT}.tmp`);
    await writeFile(tmp, JSON.stringify({ shipped: position }));
    await rename(tmp, join(this.options.dir, CHECKPOINT));
    while (this.#segments.length > 1 && this.#segments[0]!.start + this.#segments[0]!.size <= position) {
      const gone = this.#segments.shift()!;
      await unlink(join(this.options.dir, segmentName(gone.start))).catch((error: unknown) => this.options.onError?.(error));
    }
  }

  #whenIdle: (() => void) | undefined;

  /** Writes (and syncs) what is queued, then closes the file and frees the lock. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      if (this.#writing || this.#queue.length > 0) {
        await new Promise<void>((resolve) => {
          this.#whenIdle = resolve;
          if (!this.#writing) this.#flush();
        });
      }
      clearInterval(this.#syncTimer);
      await new Promise<void>((resolve) => fdatasync(this.#fd, () => resolve()));
      await new Promise<void>((resolve) => close(this.#fd, () => resolve()));
      // Everything shipped: nothing to keep (the next start begins a new journal at offset 0).
      if (this.#shipped >= this.#end && !this.#broken) {
        for (const segment of this.#segments) await unlink(join(this.options.dir, segmentName(segment.start))).catch(() => {});
        await unlink(join(this.options.dir, CHECKPOINT)).catch(() => {});
      }
      unlock(this.options.dir);
      // Only if nothing else (an owner's note) is left in it.
      if (this.#shipped >= this.#end) await rmdir(this.options.dir).catch(() => {});
    })();
    return this.#closing;
  }

  #closing: Promise<void> | undefined;
}

/** One journal per directory: a second gateway on the same data directory would interleave records. */
function lock(dir: string): void {
  const path = join(dir, LOCK);
  if (openHere.has(dir)) throw new JournalLockedError(`the audit journal ${dir} is already open in this process: give each gateway its own audit.journal.dir`);
  try {
    const pid = Number(readFileSync(path, "utf8").trim());
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new JournalLockedError(`the audit journal ${dir} is in use by process ${pid}: give each gateway its own audit.journal.dir`);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  writeFileSync(`${path}.tmp`, String(process.pid));
  renameSync(`${path}.tmp`, path);
  openHere.add(dir);
}

function unlock(dir: string): void {
  openHere.delete(dir);
  try {
    if (readFileSync(join(dir, LOCK), "utf8").trim() === String(process.pid)) unlinkSync(join(dir, LOCK));
  } catch {
    // Already gone.
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

