import { describe, expect, it } from "vitest";
import { INTERRUPT, LineDiscipline, type LineEvent } from "../src/proxy/ssh/line-discipline.js";

/** Feeds `input` split into the given chunks; returns the lines and every byte forwarded. */
function feed(chunks: Buffer[], discipline = new LineDiscipline()) {
  const events: LineEvent[] = chunks.flatMap((chunk) => discipline.push(chunk));
  const forwarded = Buffer.concat(events.flatMap((e) => (e.type === "forward" ? [e.data] : [])));
  const lines = events.flatMap((e) => (e.type === "line" ? [{ text: e.text, certain: e.certain, hidden: e.hidden, terminator: e.terminator.toString("latin1") }] : []));
  return { lines, forwarded: forwarded.toString("latin1"), discipline };
}

/** Every way of cutting `input` in two, plus byte by byte: the outcome must not depend on it. */
function everySplit(input: string): Buffer[][] {
  const bytes = Buffer.from(input, "utf8");
  const splits: Buffer[][] = [[bytes], [...bytes].map((b) => Buffer.from([b]))];
  for (let i = 1; i < bytes.length; i++) splits.push([bytes.subarray(0, i), bytes.subarray(i)]);
  return splits;
}

describe("LineDiscipline", () => {
  const cases: [string, string, { text: string; certain: boolean }[]][] = [
    ["plain line", "ls -la\r", [{ text: "ls -la", certain: true }]],
    ["backspace and DEL", "sudp\x7fo ls\r", [{ text: "sudo ls", certain: true }]],
    ["Ctrl-H", "lx\x08s\r", [{ text: "ls", certain: true }]],
    ["Ctrl-U kills to the start", "rm -rf /\x15echo ok\r", [{ text: "echo ok", certain: true }]],
    ["Ctrl-C discards the line", "rm -rf /\x03echo ok\r", [{ text: "echo ok", certain: true }]],
    ["Ctrl-W kills a word", "sudo rm  \x17ls\r", [{ text: "sudo ls", certain: true }]],
    ["cursor keys edit in the middle", "sudo s\x1b[Dl\x1b[C\r", [{ text: "sudo ls", certain: true }]],
    ["Home inserts at the start", "ls\x1b[Hsudo \r", [{ text: "sudo ls", certain: true }]],
    ["Ctrl-A / Ctrl-K", "echo hi\x01\x0bsudo ls\r", [{ text: "sudo ls", certain: true }]],
    ["Delete removes under the cursor", "xls\x01\x1b[3~\r", [{ text: "ls", certain: true }]],
    ["UTF-8 survives splitting", "echo grüße ✓\r", [{ text: "echo grüße ✓", certain: true }]],
    ["history makes the line uncertain", "\x1b[A\r", [{ text: "", certain: false }]],
    ["reverse search too", "\x12rm\r", [{ text: "rm", certain: false }]],
    ["several lines, \\r\\n counts once", "a\r\nb\n", [{ text: "a", certain: true }, { text: "b", certain: true }]],
    ["the next line is certain again", "\x1b[A\rls\r", [{ text: "", certain: false }, { text: "ls", certain: true }]],
  ];

  for (const [name, input, expected] of cases) {
    it(`${name}, at every split`, () => {
      for (const chunks of everySplit(input)) {
        const { lines, forwarded } = feed(chunks);
        expect(lines.map(({ text, certain }) => ({ text, certain }))).toEqual(expected);
        // Everything but the Enter keys goes upstream as typed.
        expect(forwarded.replace(/\n/g, "")).toBe(Buffer.from(input, "utf8").toString("latin1").replace(/\r\n|\r|\n/g, ""));
      }
    });
  }

  it("holds back only the terminator", () => {
    const { lines } = feed([Buffer.from("ls\r\n")]);
    expect(lines[0]!.terminator).toBe("\r\n");
    expect(INTERRUPT).toEqual(Buffer.from([3]));
  });

  it("follows a unique Tab completion from its echo; a list of candidates makes the line uncertain", () => {
    const discipline = new LineDiscipline();
    discipline.push(Buffer.from("sys\t"));
    discipline.output(Buffer.from("temctl "));
    expect(feed([Buffer.from("status\r")], discipline).lines[0]).toMatchObject({ text: "systemctl status", certain: true });
    discipline.push(Buffer.from("s\t"));
    discipline.output(Buffer.from("\r\nsudo  systemctl  sh\r\n$ s"));
    expect(feed([Buffer.from("\r")], discipline).lines[0]).toMatchObject({ certain: false });
  });

  it("marks lines typed inside a full-screen program (which a shell can fake) as such", () => {
    const discipline = new LineDiscipline();
    discipline.output(Buffer.from("\x1b[?1049h"));
    const events = discipline.push(Buffer.from(":wq\r"));
    expect(events.find((e) => e.type === "line")).toMatchObject({ text: ":wq", fullScreen: true });
    discipline.output(Buffer.from("\x1b[?1049l$ "));
    expect(feed([Buffer.from("ls\r")], discipline).lines).toHaveLength(1);
  });

  it("marks the answer to what looks like a password prompt as hidden (the session still checks it against the rules: see ssh-command-rules.test.ts)", () => {
    const discipline = new LineDiscipline();
    discipline.output(Buffer.from("[sudo] password for dev: "));
    expect(discipline.hidden).toBe(true);
    expect(feed([Buffer.from("hunter2\r")], discipline).lines[0]).toMatchObject({ hidden: true });
    expect(discipline.hidden).toBe(false);
  });
});
