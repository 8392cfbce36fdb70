import { describe, expect, it } from "vitest";
import { AsciicastRecorder, parseCast, playCast } from "../src/proxy/recording/asciicast.js";
import { SftpAudit, SftpProtocolError, type SftpOperation } from "../src/proxy/ssh/sftp-audit.js";

describe("asciicast v2", () => {
  it("records output, input and resizes with times relative to the start, and replays at speed", async () => {
    let now = 1_700_000_000_000;
    const recorder = new AsciicastRecorder({ width: 100, height: 30, term: "xterm" }, { now: () => now });
    now += 500;
    recorder.input(Buffer.from("ls\r"));
    now += 250;
    // A UTF-8 character split across chunks is kept whole.
    const text = Buffer.from("grüße\r\n");
    recorder.output(text.subarray(0, 3));
    recorder.output(text.subarray(3));
    recorder.resize(120, 40);
    const cast = parseCast(recorder.toString());
    expect(cast.header).toEqual({ version: 2, width: 100, height: 30, timestamp: 1_700_000_000, env: { TERM: "xterm" } });
    expect(cast.events).toEqual([
      [0.5, "i", "ls\r"],
      [0.75, "o", "gr"],
      [0.75, "o", "üße\r\n"],
      [0.75, "r", "120x40"],
    ]);
    const pauses: number[] = [];
    let played = "";
    await playCast(recorder.toString(), (d) => (played += d), { speed: 5, sleep: async (ms) => void pauses.push(ms) });
    expect(played).toBe("grüße\r\n");
    expect(pauses).toEqual([150]);
  });

  it("truncates at the size limit with a marker", () => {
    const recorder = new AsciicastRecorder({ width: 80, height: 24 }, { maxBytes: 200 });
    for (let i = 0; i < 20; i++) recorder.output(Buffer.from("0123456789"));
    expect(recorder.truncated).toBe(true);
    expect(recorder.toString()).toContain("recording truncated");
  });
});

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const str = (s: string | Buffer) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)]);
const packet = (type: number, ...parts: Buffer[]) => {
  const body = Buffer.concat([Buffer.from([type]), ...parts]);
  return Buffer.concat([u32(body.length), body]);
};
const OK = (id: number) => packet(101, u32(id), u32(0), str("ok"), str(""));

describe("SFTP audit", () => {
  const handle = Buffer.from([0, 0, 0, 1]);
  // The conversation in protocol order: [from client?, packet].
  const steps: [boolean, Buffer][] = [
    [true, packet(1, u32(3))], // INIT
    [false, packet(2, u32(3))], // VERSION
    [true, packet(3, u32(1), str("/srv/upload.bin"), u32(0x02 | 0x08 | 0x10), u32(0))], // OPEN write|creat|trunc
    [false, packet(102, u32(1), str(handle))], // HANDLE
    [true, packet(6, u32(2), str(handle), Buffer.alloc(8), str(Buffer.alloc(30_000, 7)))], // WRITE
    [true, packet(6, u32(3), str(handle), Buffer.alloc(8), str(Buffer.alloc(12, 7)))],
    [false, OK(2)],
    [false, OK(3)],
    [true, packet(4, u32(4), str(handle))], // CLOSE
    [false, OK(4)],
    [true, packet(18, u32(5), str("/srv/a"), str("/srv/b"))], // RENAME
    [true, packet(13, u32(6), str("/srv/gone"))], // REMOVE
    [false, OK(5)],
    [false, packet(101, u32(6), u32(2), str("no such file"), str(""))],
  ];
  const expected: SftpOperation[] = [
    { op: "write", path: "/srv/upload.bin", bytes: 30_012, ok: true },
    { op: "rename", path: "/srv/a", to: "/srv/b", ok: true },
    { op: "remove", path: "/srv/gone", ok: false },
  ];

  it("reports file operations with paths and sizes, whatever the chunking", () => {
    for (const size of [1, 3, 7, 64, 4096, 1 << 20]) {
      const operations: SftpOperation[] = [];
      const audit = new SftpAudit((op) => operations.push(op));
      for (const [fromClient, bytes] of steps) {
        for (let i = 0; i < bytes.length; i += size) {
          const chunk = bytes.subarray(i, i + size);
          if (fromClient) audit.fromClient(chunk);
          else audit.fromServer(chunk);
        }
      }
      expect(operations).toEqual(expected);
    }
  });

  it("counts bytes read through a handle", () => {
    const operations: SftpOperation[] = [];
    const audit = new SftpAudit((op) => operations.push(op));
    audit.fromClient(packet(3, u32(1), str("/etc/hosts"), u32(0x01), u32(0)));
    audit.fromServer(packet(102, u32(1), str(handle)));
    audit.fromClient(packet(5, u32(2), str(handle), Buffer.alloc(8), u32(32_768)));
    audit.fromServer(packet(103, u32(2), str(Buffer.alloc(321))));
    audit.fromClient(packet(4, u32(3), str(handle)));
    audit.fromServer(OK(3));
    expect(operations).toEqual([{ op: "read", path: "/etc/hosts", bytes: 321, ok: true }]);
  });

  it("refuses a packet length over the limit", () => {
    const audit = new SftpAudit(() => {});
    expect(() => audit.fromClient(u32(50_000_000))).toThrow(SftpProtocolError);
  });
});
