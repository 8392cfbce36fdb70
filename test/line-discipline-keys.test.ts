import { describe, expect, it } from "vitest";
import { LineDiscipline, type LineEvent } from "../src/proxy/ssh/line-discipline.js";

const lineOf = (events: LineEvent[]) => events.find((event): event is Extract<LineEvent, { type: "line" }> => event.type === "line");

describe("line discipline: editing keys it does not model (issue 14)", () => {
  it("Ctrl-U then Ctrl-_ (undo) brings back a line the shadow thinks is gone: the line is uncertain", () => {
    const shadow = new LineDiscipline();
    const line = lineOf(shadow.push(Buffer.from("touch f\x15ls\x1f\x1f\r")));
    // The shell may now run `touch f`; the shadow saw `ls` and must not vouch for it.
    expect(line).toMatchObject({ text: "ls", certain: false });
  });

  it("Ctrl-O, Ctrl-], Ctrl-@ and Ctrl-G make the line uncertain; Ctrl-L, Ctrl-Z and Ctrl-\\ do not", () => {
    for (const key of ["\x0f", "\x1d", "\x00", "\x07"]) {
      const line = lineOf(new LineDiscipline().push(Buffer.from(`ls${key}\r`)));
      expect({ key, certain: line?.certain }).toEqual({ key, certain: false });
    }
    for (const key of ["\x0c", "\x1a", "\x1c"]) {
      const line = lineOf(new LineDiscipline().push(Buffer.from(`ls${key}\r`)));
      expect({ key, text: line?.text, certain: line?.certain }).toEqual({ key, text: "ls", certain: true });
    }
  });
});

describe("line discipline: a password prompt is believed only when the target does not echo (issue 14)", () => {
  it("a prompt set to look like a password prompt echoes the keys back: the line is not hidden", () => {
    const shadow = new LineDiscipline();
    shadow.output(Buffer.from("password: "));
    expect(shadow.hidden).toBe(true);
    shadow.push(Buffer.from("t"));
    shadow.output(Buffer.from("t"));
    expect(lineOf(shadow.push(Buffer.from("ouch f\r")))).toMatchObject({ text: "touch f", hidden: false });
  });

  it("a real prompt (echo off, or only masking stars) keeps the answer hidden", () => {
    const quiet = new LineDiscipline();
    quiet.output(Buffer.from("[sudo] password for dev: "));
    quiet.push(Buffer.from("hun"));
    expect(lineOf(quiet.push(Buffer.from("ter2\r")))).toMatchObject({ hidden: true });
    const stars = new LineDiscipline();
    stars.output(Buffer.from("[sudo] password for dev: "));
    stars.push(Buffer.from("hu"));
    stars.output(Buffer.from("**"));
    expect(lineOf(stars.push(Buffer.from("\r")))).toMatchObject({ text: "hu", hidden: true });
  });
});
