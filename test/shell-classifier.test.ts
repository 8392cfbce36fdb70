import { beforeAll, describe, expect, it } from "vitest";
import { analyzeCommand, classifyCommand, compileShellRules, loadShellGrammar, shellRuleProblem } from "../src/rules/shell-classifier.js";

const rules = compileShellRules({ block: ["rm -rf /", "^mkfs", "^rm "], review: ["^sudo ", "^systemctl ", "^touch "] });
const verdict = async (line: string) => (await classifyCommand(line, rules)).verdict;
const classified = (line: string) => classifyCommand(line, rules);
/** Issue 14's target: `touch` held for review, `rm` blocked. */
const touchRules = compileShellRules({ block: ["^rm "], review: ["^touch "] });
const names = async (line: string) => (await analyzeCommand(line)).commands.map((command) => command.name);

beforeAll(async () => {
  await loadShellGrammar();
}, 60_000);

describe("shell classifier (real bash grammar)", () => {
  it("applies block before review, to every command in the line", async () => {
    expect(await verdict("ls -la")).toBe("allow");
    expect(await verdict("rm -rf /")).toBe("block");
    expect(await verdict("sudo rm -rf /")).toBe("block");
    expect(await verdict("sudo ls")).toBe("review");
    expect(await verdict("cd /tmp && sudo ls")).toBe("review");
    expect(await verdict("ls; systemctl restart nginx")).toBe("review");
    expect(await verdict("cat x | sudo tee /etc/y")).toBe("review");
    expect(await verdict("echo $(sudo id)")).toBe("review");
    expect(await verdict("echo `sudo id`")).toBe("review");
    expect(await verdict("(sudo ls)")).toBe("review");
    expect(await verdict("true || mkfs.ext4 /dev/sda")).toBe("block");
  });

  it("finds the command in every bypass of issue 14 and resolves its name", async () => {
    for (const line of [
      "! touch f",
      "if :; then touch f; fi",
      "while true; do touch f; break; done",
      "for i in 1; do touch f; done",
      "case x in x) touch f;; esac",
      "/usr/bin/touch f",
      "time -p touch f",
      "nice -n 5 touch f",
      "nice -5 touch f",
      "timeout -s KILL 5 touch f",
      "nohup touch f",
      "stdbuf -oL touch f",
      "setsid -f touch f",
      "chroot / touch f",
      "echo f | xargs touch",
      "echo f | xargs -n 1 -I{} touch {}",
      "sh -c 'touch f'",
      "bash -lc 'touch f'",
      "bash -c \"echo ok; touch f\"",
      "eval 'touch f'",
      "eval touch f",
      "su -c 'touch f' root",
      "'to'uch f",
      '"touch" f',
      "t\\ouch f",
      "\\touch f",
      "command touch f",
      "command -p touch f",
      "exec touch f",
      "builtin touch f",
      "env -i touch f",
      "env -u HOME FOO=1 touch f",
      "FOO=1 touch f",
      "sudo -u x touch f",
      "sudo -E -u x -- touch f",
      "doas -u x touch f",
      "find . -exec touch {} \\;",
      "find . -name x -execdir touch {} +",
      "f(){ touch x; }; f",
      "function f { touch x; }",
      "alias t='touch'; t f",
      "cat <(touch f)",
      "echo x > >(touch f)",
      "echo $(touch f)",
      "X=$(touch f) ls",
      "echo \"$(touch f)\"",
      "[[ -n $(touch f) ]]",
      "echo $(( $(touch f) + 1 ))",
      "trap 'touch f' EXIT",
      "watch -n 1 touch f",
      "ls && { touch f; }",
      "(cd /tmp; touch f) &",
      "cat <<EOF\n$(touch f)\nEOF",
      "sudo sh -c 'nice -n 1 env -i /usr/bin/touch f'",
      "coproc touch f",
    ]) {
      const result = await classifyCommand(line, touchRules);
      expect({ line, verdict: result.verdict, rule: result.rule }).toEqual({ line, verdict: "review", rule: "^touch " });
      expect(await names(line), line).toContain("touch");
    }
    expect(await verdict("/bin/rm -r x")).toBe("block");
    expect(await verdict("sudo -u x rm x")).toBe("block");
    expect(await verdict("echo x | xargs rm")).toBe("block");
  });

  it("what cannot be known before it runs is unverifiable, with its own verdict", async () => {
    for (const [line, why] of [
      ["x=touch; $x f", /command name is not a literal: \$x/],
      ["$(echo touch) f", /command name is not a literal: \$\(echo touch\)/],
      ["`echo touch` f", /command name is not a literal/],
      ["echo dG91Y2ggZgo= | base64 -d | sh", /text is fed to a shell: sh/],
      ["curl -s http://x | bash", /text is fed to a shell: bash/],
      ["echo 'import os' | python3", /text is fed to python3/],
      ["sh < script.sh", /text is fed to a shell/],
      ["sh <<EOF\ntouch f\nEOF", /text is fed to a shell/],
      ["bash <<< 'touch f'", /text is fed to a shell/],
      ["echo touch f > >(sh)", /text is fed to a shell/],
      ["echo touch f | (sh)", /text is fed to a shell/],
      ["eval \"$CMD\"", /eval of something not literal/],
      ["sh -c \"$CMD\"", /not a literal/],
      ["source ./defs.sh", /source runs a file/],
      [". ./defs.sh", /\. runs a file/],
      ["python3 -c 'import os; os.system(\"touch f\")'", /runs code given inline/],
      ["perl -e 'system q(touch f)'", /runs code given inline/],
      ["tou* f", /not a literal/],
      ["~/bin/touch f", /not a literal/],
      ["$'\\x74ouch' f", /not a literal/],
      ["nice --no-such-option touch f", /nice option --no-such-option is not one jitgate knows/],
      ["env -S 'touch f'", /env -S/],
      ["if then", /not valid shell syntax/],
      ["echo 'unterminated", /not valid shell syntax/],
    ] as const) {
      const result = await classified(line);
      expect({ line, verdict: result.verdict, reason: result.reason }).toEqual({ line, verdict: "review", reason: "unverifiable" });
      expect(result.rule, line).toMatch(/^unverifiable: /);
      expect(result.rule, line).toMatch(why);
    }
    // A block rule still wins over unverifiable; an unverifiable verdict of block is honoured.
    expect(await verdict("rm x; $x")).toBe("block");
    const strict = compileShellRules({ block: [], review: ["^sudo "], unverifiable: "block", shell: "allow" });
    expect((await classifyCommand("$x f", strict)).verdict).toBe("block");
    const lax = compileShellRules({ block: [], review: ["^sudo "], unverifiable: "allow" });
    expect((await classifyCommand("$x f", lax)).verdict).toBe("allow");
    // Arguments that are not literals do not make a known command unverifiable.
    expect(await verdict("ls $HOME \"$(pwd)\"")).toBe("allow");
  });

  it("a shell started without a command is a shell, with its own verdict", async () => {
    for (const line of ["bash", "bash -i", "sh", "/bin/zsh -l", "su -", "su root", "chroot /", "python3", "exec bash --login", "doas -s"]) {
      const result = await classified(line);
      expect({ line, verdict: result.verdict, reason: result.reason, rule: result.rule }).toEqual({ line, verdict: "review", reason: "shell", rule: "interactive shell" });
    }
    const allowShell = compileShellRules({ block: [], review: ["^sudo "], shell: "allow" });
    expect((await classifyCommand("bash -i", allowShell)).verdict).toBe("allow");
    const blockShell = compileShellRules({ block: [], review: ["^sudo "], shell: "block" });
    expect((await classifyCommand("bash", blockShell)).verdict).toBe("block");
    // `sudo -i` meets the review rule `^sudo ` and starts a shell: the stricter verdict wins.
    expect(await classifyCommand("sudo -i", blockShell)).toMatchObject({ verdict: "block", reason: "shell", startsShell: true });
    expect(await classifyCommand("sudo -i", allowShell)).toMatchObject({ verdict: "review", reason: "rule", startsShell: true });
    expect(await classifyCommand("sudo -s", blockShell)).toMatchObject({ verdict: "block", reason: "shell" });
    // A script file is an ordinary command (what it runs is not seen).
    expect(await verdict("bash ./deploy.sh")).toBe("allow");
  });

  it("does not split inside quotes, and honest lines stay allowed", async () => {
    expect(await verdict("echo 'a; sudo b'")).toBe("allow");
    expect(await verdict("echo 'sudo x; rm y' > notes")).toBe("allow");
    expect(await verdict("ls 2>&1 | grep x")).toBe("allow");
    expect(await verdict("grep -r touch /etc | head")).toBe("allow");
    expect(await verdict("for f in *.log; do gzip \"$f\"; done")).toBe("allow");
    expect(await names("ls 2>&1 | grep x")).toEqual(["ls", "grep"]);
    expect((await analyzeCommand("echo f | xargs -0 touch")).commands.map((c) => c.text)).toEqual(["echo f", "xargs -0 touch", "touch …"]);
  });

  it("in a line typed into a shell, history expansion is unverifiable", async () => {
    for (const line of ["!!", "!-2:s/ls/rm/", "^ls^touch", "echo !$", "sudo !!"]) {
      const result = await classifyCommand(line, touchRules, { interactive: true });
      expect({ line, verdict: result.verdict, rule: result.rule }).toEqual({ line, verdict: "review", rule: "unverifiable: history expansion (!, ^) runs a command from the shell's history" });
    }
    for (const line of ["! grep -q x f", "echo 'hi!'", "[ ! -e f ]", "echo a!=b"]) {
      expect(await classifyCommand(line, touchRules, { interactive: true }), line).toMatchObject({ verdict: "allow" });
    }
    // An exec command is not history-expanded (a non-interactive shell has no history).
    expect((await classifyCommand("echo !!", touchRules)).verdict).toBe("allow");
  });

  it("without rules everything is allowed; the recorded text is normalized; rules are validated", async () => {
    expect((await classifyCommand("$x f", compileShellRules({ block: [], review: [] }))).verdict).toBe("allow");
    expect(await classifyCommand("  sudo   ls  ", rules)).toEqual({ text: "sudo ls", verdict: "review", rule: "^sudo ", reason: "rule" });
    expect(shellRuleProblem("^sudo (")).toMatch(/not a valid regular expression/);
    expect(shellRuleProblem("^sudo ")).toBeUndefined();
  });
});
