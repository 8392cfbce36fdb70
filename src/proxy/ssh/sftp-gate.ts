/**
 * The client's side of an SFTP stream (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it), cut
 * into requests so that a request that changes the host can be recorded — and refused or held by
 * the target's `files` rules — before it is forwarded. Pure: bytes in, requests and descriptions out.
 */
import { SftpPacketScanner, SftpProtocolError, SftpReader } from "./sftp-packets.js";

export interface FileChange {
  op: "write" | "setstat" | "remove" | "rename" | "mkdir" | "rmdir" | "symlink" | "hardlink" | "copy-data";
  path: string;
  /** rename: the new name; symlink, hardlink: what the link points to. */
  to?: string;
  /** copy-data: the file copied from (`path` is the file written). */
  from?: string;
  /** write: the open truncates the file. */
  truncate?: boolean;
  /** setstat: the size set (a truncation) and the permission bits set (a chmod). */
  size?: number;
  mode?: number;
  /** copy-data: how many bytes are copied (0: to the end of the source). */
  bytes?: number;
}

const T = { OPEN: 3, SETSTAT: 9, FSETSTAT: 10, REMOVE: 13, MKDIR: 14, RMDIR: 15, RENAME: 18, SYMLINK: 20, EXTENDED: 200, STATUS: 101 } as const;
const FXF = { WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10 } as const;
export const SSH_FX_PERMISSION_DENIED = 3;

/** Request types that may change the host: the gate reads them whole before they go on. */
const MAY_CHANGE: ReadonlySet<number> = new Set([T.OPEN, T.SETSTAT, T.FSETSTAT, T.REMOVE, T.MKDIR, T.RMDIR, T.RENAME, T.SYMLINK, T.EXTENDED]);

/**
 * Cuts the client's bytes into the pieces the gate needs: requests that may change the host come
 * whole, the others as a head and the rest of their bytes (a WRITE's data is never copied).
 */
export function requestScanner(): SftpPacketScanner {
  return new SftpPacketScanner((type) => MAY_CHANGE.has(type));
}

export function requestType(packet: Buffer): number {
  return packet[4]!;
}

export function requestId(packet: Buffer): number {
  return packet.length >= 9 ? packet.readUInt32BE(5) : 0;
}

/**
 * What a request changes on the host, or undefined for one that only reads. `pathOf` gives the
 * path a handle was opened for (fsetstat, copy-data), when known.
 */
export function fileChangeOf(packet: Buffer, pathOf: (handle: string) => string | undefined): FileChange | undefined {
  const r = new SftpReader(packet, 9); // past uint32 length, byte type, uint32 request-id
  const handlePath = (handle: Buffer) => pathOf(handle.toString("hex")) ?? "(unknown handle)";
  switch (requestType(packet)) {
    case T.OPEN: {
      const path = r.string();
      const flags = r.u32();
      if ((flags & (FXF.WRITE | FXF.APPEND | FXF.CREAT | FXF.TRUNC)) === 0) return undefined;
      return { op: "write", path, ...((flags & FXF.TRUNC) !== 0 ? { truncate: true } : {}) };
    }
    case T.SETSTAT:
      return { op: "setstat", path: r.string(), ...r.attrs() };
    case T.FSETSTAT:
      return { op: "setstat", path: handlePath(r.bytes()), ...r.attrs() };
    case T.REMOVE:
      return { op: "remove", path: r.string() };
    case T.MKDIR:
      return { op: "mkdir", path: r.string() };
    case T.RMDIR:
      return { op: "rmdir", path: r.string() };
    case T.RENAME: {
      const path = r.string();
      return { op: "rename", path, to: r.string() };
    }
    case T.SYMLINK: {
      // OpenSSH sends the link's target first and the link second (reversed from the draft).
      const target = r.string();
      return { op: "symlink", path: r.string(), to: target };
    }
    case T.EXTENDED: {
      const name = r.string();
      if (name === "posix-rename@openssh.com") {
        const path = r.string();
        return { op: "rename", path, to: r.string() };
      }
      if (name === "hardlink@openssh.com") {
        const path = r.string();
        return { op: "hardlink", path: r.string(), to: path };
      }
      if (name === "lsetstat@openssh.com") return { op: "setstat", path: r.string(), ...r.attrs() };
      if (name === "fsetstat@openssh.com") return { op: "setstat", path: handlePath(r.bytes()), ...r.attrs() };
      if (name === "copy-data") {
        const from = handlePath(r.bytes());
        r.u64();
        const bytes = r.u64();
        const to = handlePath(r.bytes());
        return { op: "copy-data", path: to, from, bytes };
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

/** A STATUS answer to a request that is not forwarded (filexfer-02 §7). */
export function statusReply(id: number, code: number, message: string): Buffer {
  const text = Buffer.from(message, "utf8");
  const body = Buffer.alloc(1 + 4 + 4 + 4 + text.length + 4);
  let offset = body.writeUInt8(T.STATUS, 0);
  offset = body.writeUInt32BE(id, offset);
  offset = body.writeUInt32BE(code, offset);
  offset = body.writeUInt32BE(text.length, offset);
  offset += text.copy(body, offset);
  body.writeUInt32BE(0, offset); // language tag: empty
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length, 0);
  return Buffer.concat([length, body]);
}
