import { describe, expect, it } from "vitest";
import { fileChangeOf, requestId, requestScanner, statusReply } from "../src/proxy/ssh/sftp-gate.js";
import { HEADER_PREFIX, SftpProtocolError, type SftpPiece } from "../src/proxy/ssh/sftp-packets.js";

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
};
const u64 = (n: number) => Buffer.concat([u32(Math.floor(n / 2 ** 32)), u32(n % 2 ** 32)]);
const str = (s: string | Buffer) => {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  return Buffer.concat([u32(b.length), b]);
};
const packet = (type: number, id: number, ...parts: Buffer[]) => {
  const body = Buffer.concat([Buffer.from([type]), u32(id), ...parts]);
  return Buffer.concat([u32(body.length), body]);
};

describe("SFTP gate: request packets and what they change", () => {
  const open = packet(3, 7, str("/etc/passwd"), u32(0x02 | 0x08 | 0x10), u32(0));
  const chmod = packet(9, 8, str("/etc/shadow"), u32(0x4), u32(0o100600));
  const truncate = packet(10, 9, str(Buffer.from([1, 2])), u32(0x1), u64(0));
  const hardlink = packet(200, 10, str("hardlink@openssh.com"), str("/etc/passwd"), str("/tmp/p"));
  const read = packet(3, 11, str("/etc/hosts"), u32(0x01), u32(0));

  const write = packet(6, 12, str(Buffer.from([1, 2])), u64(0), str(Buffer.alloc(2_000, 7)));

  /** Requests back from pieces: a head and the tails after it make one packet. */
  const reassemble = (pieces: SftpPiece[]) => {
    const packets: { whole: boolean; bytes: Buffer[] }[] = [];
    for (const piece of pieces) {
      if (piece.kind === "head") packets.push({ whole: piece.whole, bytes: [piece.head] });
      else packets.at(-1)!.bytes.push(piece.bytes);
    }
    return packets.map((p) => ({ whole: p.whole, packet: Buffer.concat(p.bytes) }));
  };

  it("cuts a stream into requests however it is split: those that may change the host whole, a WRITE's data as it comes", () => {
    const requests = [open, chmod, write, truncate, hardlink, read];
    const stream = Buffer.concat(requests);
    // Compared with Buffer.equals: a deep equality over every byte at every cut is far slower.
    const problem = (pieces: SftpPiece[]): string | undefined => {
      const got = reassemble(pieces);
      if (got.length !== requests.length) return `${got.length} requests instead of ${requests.length}`;
      for (const [i, request] of requests.entries()) {
        if (!got[i]!.packet.equals(request)) return `request ${i} differs`;
        if (got[i]!.whole !== (request !== write)) return `request ${i} is ${got[i]!.whole ? "" : "not "}whole`;
      }
      const head = pieces.find((p) => p.kind === "head" && p.type === 6);
      // The WRITE's head is its header, not its data.
      if (head?.kind !== "head" || !head.head.equals(write.subarray(0, HEADER_PREFIX))) return "the WRITE's head is not its header";
      return undefined;
    };
    for (let cut = 0; cut <= stream.length; cut++) {
      const scanner = requestScanner();
      expect(problem([...scanner.push(stream.subarray(0, cut)), ...scanner.push(stream.subarray(cut))]), `cut at ${cut}`).toBeUndefined();
    }
    const bytewise = requestScanner();
    expect(problem([...stream].flatMap((b) => bytewise.push(Buffer.from([b]))))).toBeUndefined();
  });

  it("refuses a packet over the limit, or too short to hold a type and an id", () => {
    expect(() => requestScanner().push(u32(64 * 1024 * 1024))).toThrow(SftpProtocolError);
    expect(() => requestScanner().push(Buffer.concat([u32(1), Buffer.from([3])]))).toThrow(SftpProtocolError);
  });

  it("describes what a request changes (and nothing for a read)", () => {
    const pathOf = (handle: string) => (handle === "0102" ? "/var/log/app.log" : undefined);
    expect(fileChangeOf(open, pathOf)).toEqual({ op: "write", path: "/etc/passwd", truncate: true });
    expect(fileChangeOf(chmod, pathOf)).toEqual({ op: "setstat", path: "/etc/shadow", mode: 0o600 });
    expect(fileChangeOf(truncate, pathOf)).toEqual({ op: "setstat", path: "/var/log/app.log", size: 0 });
    expect(fileChangeOf(hardlink, pathOf)).toEqual({ op: "hardlink", path: "/tmp/p", to: "/etc/passwd" });
    expect(fileChangeOf(read, pathOf)).toBeUndefined();
  });

  it("answers a refused request with a STATUS packet of its id", () => {
    const reply = statusReply(42, 3, "jitgate: blocked");
    expect(reply.readUInt32BE(0)).toBe(reply.length - 4);
    expect(reply[4]).toBe(101);
    expect(reply.readUInt32BE(5)).toBe(42);
    expect(reply.readUInt32BE(9)).toBe(3);
    expect(reply.subarray(17, 17 + 16).toString()).toBe("jitgate: blocked");
  });
});
