import { describe, expect, it } from "vitest";
import { classifyCommand, commandSegments, compileShellRules, shellRuleProblem } from "../src/rules/shell-classifier.js";

const rules = compileShellRules({ block: ["rm -rf /", "^mkfs"], review: ["^sudo ", "^systemctl "] });
const verdict = (line: string) => classifyCommand(line, rules).verdict;

describe("shell classifier", () => {
  it("applies block before review, to the whole line and each command in it", () => {
    expect(verdict("ls -la")).toBe("allow");
    expect(verdict("rm -rf /")).toBe("block");
    expect(verdict("sudo rm -rf /")).toBe("block");
    expect(verdict("sudo ls")).toBe("review");
    expect(verdict("cd /tmp && sudo ls")).toBe("review");
    expect(verdict("ls; systemctl restart nginx")).toBe("review");
    expect(verdict("cat x | sudo tee /etc/y")).toBe("review");
    expect(verdict("echo $(sudo id)")).toBe("review");
    expect(verdict("echo `sudo id`")).toBe("review");
    expect(verdict("(sudo ls)")).toBe("review");
    expect(verdict("true || mkfs.ext4 /dev/sda")).toBe("block");
  });

  it("sees through quotes, assignments and wrappers", () => {
    expect(verdict('"r"m -rf /')).toBe("block");
    expect(verdict("r\\m   -rf    /")).toBe("block");
    expect(verdict("FOO=1 nohup sudo ls")).toBe("review");
    expect(verdict("env -i sudo ls")).toBe("review");
  });

  it("does not split inside quotes", () => {
    expect(commandSegments("echo 'a; sudo b' && ls")).toEqual(["echo 'a; sudo b'", "ls"]);
    expect(verdict("echo 'a; sudo b'")).toBe("allow");
    expect(commandSegments("ls 2>&1 | grep x")).toEqual(["ls 2>&1", "grep x"]);
  });

  it("normalizes the recorded text and validates rules", () => {
    expect(classifyCommand("  sudo   ls  ", rules)).toEqual({ text: "sudo ls", verdict: "review", rule: "^sudo " });
    expect(shellRuleProblem("^sudo (")).toMatch(/not a valid regular expression/);
    expect(shellRuleProblem("^sudo ")).toBeUndefined();
  });
});
