import { describe, expect, it } from "vitest";
import { SftpProtocolError } from "../src/proxy/ssh/sftp-audit.js";
import { fileChangeOf, requestId, SftpPacketFramer, statusReply } from "../src/proxy/ssh/sftp-gate.js";

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

  it("cuts a stream into whole packets, however it is split", () => {
    const stream = Buffer.concat([open, chmod, truncate, hardlink, read]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const framer = new SftpPacketFramer();
      const packets = [...framer.push(stream.subarray(0, cut)), ...framer.push(stream.subarray(cut))];
      expect(packets.map((p) => requestId(p))).toEqual([7, 8, 9, 10, 11]);
    }
    const bytewise = new SftpPacketFramer();
    expect([...stream].flatMap((b) => bytewise.push(Buffer.from([b]))).map((p) => p.length)).toEqual([open, chmod, truncate, hardlink, read].map((p) => p.length));
  });

  it("refuses a packet over the limit", () => {
    expect(() => new SftpPacketFramer().push(u32(64 * 1024 * 1024))).toThrow(SftpProtocolError);
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
