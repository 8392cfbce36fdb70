/**
 * Cuts one direction of an SFTP stream (draft-ietf-secsh-filexfer-02: uint32 length, byte type,
 * …) into packets without copying their data: each packet is handed over as its head (the whole
 * packet, or only its first bytes for the packet types the caller does not need whole) followed by
 * the rest of its bytes as they arrive, as slices of the chunks that carried them. Pure: bytes in,
 * pieces out.
 */

export class SftpProtocolError extends Error {}

/** ATTRS flags (filexfer-02 §5). */
const ATTR = { SIZE: 0x1, UIDGID: 0x2, PERMISSIONS: 0x4 } as const;

/** Reads the fields of one SFTP packet (or its body) in order; a field past its end is a protocol error. */
export class SftpReader {
  constructor(
    readonly packet: Buffer,
    public offset = 0,
  ) {}
  u32(): number {
    if (this.offset + 4 > this.packet.length) throw new SftpProtocolError("truncated SFTP packet");
    const value = this.packet.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }
  u64(): number {
    const high = this.u32();
    return high * 2 ** 32 + this.u32();
  }
  bytes(): Buffer {
    const length = this.u32();
    if (this.offset + length > this.packet.length) throw new SftpProtocolError("truncated SFTP string");
    const value = this.packet.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }
  string(): string {
    return this.bytes().toString("utf8");
  }
  /** ATTRS (filexfer-02 §5): what a setstat changes. */
  attrs(): { size?: number; mode?: number } {
    const flags = this.u32();
    const out: { size?: number; mode?: number } = {};
    if (flags & ATTR.SIZE) out.size = this.u64();
    if (flags & ATTR.UIDGID) this.offset += 8;
    if (flags & ATTR.PERMISSIONS) out.mode = this.u32() & 0o7777;
    return out;
  }
}

/** OpenSSH caps its packets at 256 KiB (SFTP_MAX_MSG_LENGTH); anything far over it is not SFTP. */
export const MAX_SFTP_PACKET = 1024 * 1024;

/**
 * What is read of a packet that is not needed whole: length, type, request id, a handle (at most
 * 256 bytes, filexfer-02 §6.2), a uint64 offset and a uint32 length: a WRITE's or DATA's header.
 */
export const HEADER_PREFIX = 4 + 1 + 4 + 4 + 256 + 8 + 4;

export type SftpPiece =
  /** A packet's first bytes: the whole packet when `whole`, else its first HEADER_PREFIX bytes. */
  | { kind: "head"; type: number; head: Buffer; whole: boolean }
  /** More bytes of the packet whose head came last (never part of a whole head). */
  | { kind: "tail"; bytes: Buffer };

export class SftpPacketScanner {
  #parts: Buffer[] = [];
  #have = 0;
  /** How many of the current packet's bytes its head needs: 4 (its length), 5 (its type), then all it keeps. */
  #want = 4;
  #total = -1;
  #type = -1;
  /** Bytes of the current packet that go out as tail pieces. */
  #tail = 0;

  /** `whole(type)`: whether packets of this type are handed over whole. */
  constructor(private readonly whole: (type: number) => boolean) {}

  /** Throws SftpProtocolError on a packet too short or over the limit. */
  push(chunk: Buffer): SftpPiece[] {
    const pieces: SftpPiece[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#tail > 0) {
        const n = Math.min(this.#tail, chunk.length - offset);
        pieces.push({ kind: "tail", bytes: chunk.subarray(offset, offset + n) });
        this.#tail -= n;
        offset += n;
        continue;
      }
      const n = Math.min(this.#want - this.#have, chunk.length - offset);
      this.#parts.push(chunk.subarray(offset, offset + n));
      this.#have += n;
      offset += n;
      if (this.#have < this.#want) break;
      if (this.#total < 0) {
        const length = this.#joined().readUInt32BE(0);
        if (length < 5 || length > MAX_SFTP_PACKET) throw new SftpProtocolError(`SFTP packet of ${length} bytes is out of bounds`);
        this.#total = 4 + length;
        this.#want = 5;
        continue;
      }
      if (this.#type < 0) {
        this.#type = this.#joined()[4]!;
        this.#want = this.whole(this.#type) ? this.#total : Math.min(this.#total, HEADER_PREFIX);
        if (this.#have < this.#want) continue;
      }
      const head = this.#joined();
      pieces.push({ kind: "head", type: this.#type, head, whole: this.#want === this.#total });
      this.#tail = this.#total - this.#want;
      this.#parts = [];
      this.#have = 0;
      this.#want = 4;
      this.#total = -1;
      this.#type = -1;
    }
    return pieces;
  }

  #joined(): Buffer {
    if (this.#parts.length > 1) this.#parts = [Buffer.concat(this.#parts, this.#have)];
    return this.#parts[0]!;
  }
}
