import { gunzipSync, gzipSync } from "node:zlib";

/**
 * A minimal POSIX ustar archive of regular files, gzip-compressed: what `tar -xzf` and every
 * archiver read. Only what an evidence bundle needs: flat or one-level paths, no links, no
 * directories, no extended headers (names are at most 100 bytes of ASCII, which the writer checks).
 * The layout is POSIX.1-1988 ustar: https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_06
 */

const BLOCK = 512;
const NAME = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)?$/;

export class TarError extends Error {
  override readonly name = "TarError";
}

export interface TarEntry {
  name: string;
  body: Buffer;
}

function nameProblem(name: string): string | undefined {
  if (Buffer.byteLength(name) > 100 || !NAME.test(name)) return `"${name}" is not a plain file name of at most 100 characters`;
  if (name.split("/").some((part) => part === "." || part === "..")) return `"${name}" climbs out of the archive`;
  return undefined;
}

function octal(value: number, width: number): string {
  // width − 1 octal digits and a NUL, as ustar numeric fields are written.
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

function header(name: string, size: number, mtime: Date): Buffer {
  const block = Buffer.alloc(BLOCK, 0);
  block.write(name, 0, 100, "ascii");
  block.write(octal(0o644, 8), 100, "ascii");
  block.write(octal(0, 8), 108, "ascii");
  block.write(octal(0, 8), 116, "ascii");
  block.write(octal(size, 12), 124, "ascii");
  block.write(octal(Math.floor(mtime.getTime() / 1000), 12), 136, "ascii");
  block.write(" ".repeat(8), 148, "ascii");
  block.write("0", 156, "ascii");
  block.write("ustar\0", 257, "ascii");
  block.write("00", 263, "ascii");
  const sum = block.reduce((total, byte) => total + byte, 0);
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return block;
}

/** The files as one .tar.gz, in the order given. */
export function writeTarGz(entries: readonly TarEntry[], mtime: Date): Buffer {
  const seen = new Set<string>();
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const problem = nameProblem(entry.name);
    if (problem) throw new TarError(problem);
    if (seen.has(entry.name)) throw new TarError(`"${entry.name}" is in the archive twice`);
    seen.add(entry.name);
    if (entry.body.length >= 8 ** 11) throw new TarError(`"${entry.name}" is too large for a ustar archive`);
    parts.push(header(entry.name, entry.body.length, mtime), entry.body);
    const pad = (BLOCK - (entry.body.length % BLOCK)) % BLOCK;
    if (pad > 0) parts.push(Buffer.alloc(pad, 0));
  }
  parts.push(Buffer.alloc(BLOCK * 2, 0));
  return gzipSync(Buffer.concat(parts));
}

/**
 * The regular files of a .tar.gz, refusing what this writer never makes (links, directories,
 * absolute or climbing names, a name twice, a broken header checksum). `maxBytes` caps the
 * uncompressed size, so a small hostile file cannot exhaust memory.
 */
export function readTarGz(archive: Buffer, maxBytes: number): TarEntry[] {
  let tar: Buffer;
  try {
    tar = gunzipSync(archive, { maxOutputLength: maxBytes });
  } catch (error) {
    throw new TarError(`not a gzip-compressed archive, or larger than ${maxBytes} bytes uncompressed (${(error as Error).message})`, { cause: error });
  }
  const entries: TarEntry[] = [];
  const seen = new Set<string>();
  let offset = 0;
  while (offset + BLOCK <= tar.length) {
    const block = tar.subarray(offset, offset + BLOCK);
    if (block.every((byte) => byte === 0)) return entries;
    const field = (start: number, length: number) => block.subarray(start, start + length).toString("ascii").replace(/\0.*$/s, "");
    const stored = parseInt(field(148, 8).trim(), 8);
    const sum = block.reduce((total, byte, i) => total + (i >= 148 && i < 156 ? 32 : byte), 0);
    if (stored !== sum) throw new TarError(`the archive's header at byte ${offset} is damaged (checksum)`);
    const name = field(0, 100);
    const type = field(156, 1);
    if (type !== "0" && type !== "") throw new TarError(`"${name}" is not a regular file`);
    const problem = nameProblem(name);
    if (problem) throw new TarError(problem);
    if (seen.has(name)) throw new TarError(`"${name}" is in the archive twice`);
    seen.add(name);
    const size = parseInt(field(124, 12).trim() || "0", 8);
    if (!Number.isSafeInteger(size) || size < 0 || offset + BLOCK + size > tar.length) throw new TarError(`"${name}" is cut short`);
    entries.push({ name, body: Buffer.from(tar.subarray(offset + BLOCK, offset + BLOCK + size)) });
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  throw new TarError("the archive ends without its end marker (cut short)");
}
