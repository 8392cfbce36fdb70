/**
 * Issue 14, by effect on the host: a target whose rules hold `touch` for review and block `rm`,
 * the bypasses of the issue run with real OpenSSH through the proxy, and a canary file on the
 * host that must not appear unless the thread approved it. Most grammar cases are unit tests over
 * the same parser (test/shell-classifier.test.ts); these are the representative set end to end.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { and, eq } from "drizzle-orm";
import type { HeldSnapshot, Person, SessionSnapshot, SessionSummary } from "../src/broker/index.js";
import { auditEvents } from "../src/db/schema.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { nextEvent } from "./support/jobs.js";
import { interactiveProcess, runProcess, type Run } from "./support/processes.js";
import { SSH_CLIENT_OPTIONS, startPrivateSshd, type PrivateSshd } from "./support/sshd.js";

let sshd: PrivateSshd;
let test: TestGateway;
let lead: Person;
let port: number;
let dir: string;

function ssh(secret: string, args: string[]): Promise<Run> {
  return runProcess(
    "sshpass",
    ["-e", "ssh", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-p", String(port), "guarded@127.0.0.1", ...args],
    { env: { SSHPASS: secret }, timeoutMs: 60_000 },
  );
}

/** An ssh client we type into (a pty with -tt). */
function interactiveSsh(secret: string, args: string[]) {
  return interactiveProcess(
    "sshpass",
    ["-e", "ssh", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-p", String(port), "guarded@127.0.0.1", ...args],
    { SSHPASS: secret },
  );
}

let people = 0;
async function grant(): Promise<{ secret: string; who: Person; grantId: string }> {
  people += 1;
  const who = await test.gateway.broker.identify({ platform: "slack", externalId: `U14${people}`, email: `dev14-${people}@example.com`, displayName: `Dev ${people}` });
  const request = await test.gateway.broker.request(who, { target: "guarded", duration: "1h", reason: "INC-14 bypasses" });
  const result = await test.gateway.broker.decide(lead, { requestId: request.id, verdict: "approve" });
  return { secret: /\(password: ([^)]+)\)/.exec(result.connection!.line)![1]!, who, grantId: result.grant!.id };
}

const heldEvent = (predicate: (held: HeldSnapshot) => boolean) =>
  nextEvent<{ held: HeldSnapshot }>((l) => test.gateway.cluster.events.on("statement.held", l), (p) => predicate(p.held), 60_000);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-issue14-"));
  chmodSync(dir, 0o777);
  sshd = await startPrivateSshd("rules");
  // A `sudo` for the target's sessions (the test machine has none): it runs what it is given.
  writeFileSync(join(sshd.binDir, "sudo"), '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do [ "$1" = -u ] && shift; shift; done\nexec "$@"\n', { mode: 0o755 });
  test = await startTestGateway(
    "sshrules",
    `
defaults: { reviewTimeout: 30s }
proxy:
  ssh: { listen: 127.0.0.1:0, publicAddress: ssh-gw.example.com:2222, hostKeyFile: ${join(dir, "gateway", "ssh_host_ed25519_key")} }
targets:
  - name: guarded
    kind: ssh
    upstream: ssh://${sshd.user}@127.0.0.1:${sshd.port}
    privateKeyFile: ${sshd.gatewayKeyFile}
    hostKey: "${sshd.hostKey}"
    approvers: [lead@example.com]
    commands: { block: ["^rm "], review: ["^touch "] }
    files: { block: ["/blocked/"], review: ["/held/"] }
`,
  );
  port = test.gateway.sshProxy!.address.port;
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "ULEAD14", email: "lead@example.com", displayName: "Lead" });
}, 60_000);

afterAll(async () => {
  await test?.close();
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("exec commands through the proxy, by effect on the host", () => {
  it("every bypass of issue 14 is held (touch) and, denied, leaves no file; `ls` still runs", async () => {
    const { secret, who } = await grant();
    const canary = (n: number) => join(dir, `canary-${n}`);
    const b64 = (text: string) => Buffer.from(text).toString("base64");
    const cases: { line: (file: string) => string; rule: RegExp }[] = [
      { line: (f) => `! touch ${f}`, rule: /^\^touch $/ },
      { line: (f) => `if :; then touch ${f}; fi`, rule: /^\^touch $/ },
      { line: (f) => `for i in 1; do touch ${f}; done`, rule: /^\^touch $/ },
      { line: (f) => `/usr/bin/touch ${f}`, rule: /^\^touch $/ },
      { line: (f) => `time -p touch ${f}`, rule: /^\^touch $/ },
      { line: (f) => `nice -n 5 touch ${f}`, rule: /^\^touch $/ },
      { line: (f) => `echo ${f} | xargs touch`, rule: /^\^touch $/ },
      { line: (f) => `sh -c 'touch ${f}'`, rule: /^\^touch $/ },
      { line: (f) => `eval 'touch ${f}'`, rule: /^\^touch $/ },
      { line: (f) => `'to'uch ${f}`, rule: /^\^touch $/ },
      { line: (f) => `t\\ouch ${f}`, rule: /^\^touch $/ },
      { line: (f) => `env -i touch ${f}`, rule: /^\^touch $/ },
      { line: (f) => `sudo -u nobody touch ${f}`, rule: /^\^touch $/ },
      { line: (f) => `find ${dir} -maxdepth 0 -exec touch ${f} \\;`, rule: /^\^touch $/ },
      { line: (f) => `f(){ touch ${f}; }; f`, rule: /^\^touch $/ },
      { line: (f) => `x=touch; $x ${f}`, rule: /^unverifiable: the command name is not a literal: \$x$/ },
      { line: (f) => `$(echo touch) ${f}`, rule: /^unverifiable: the command name is not a literal/ },
      { line: (f) => `echo ${b64(`touch ${f}`)} | base64 -d | sh`, rule: /^unverifiable: text is fed to a shell: sh$/ },
      { line: (f) => `sh <<EOF\ntouch ${f}\nEOF`, rule: /^unverifiable: text is fed to a shell/ },
    ];
    const check = async ({ line, rule }: (typeof cases)[number], n: number) => {
        const command = line(canary(n));
        const held = heldEvent((h) => h.personId === who.id && h.text === command.replace(/\s+/g, " ").trim());
        const run = ssh(secret, [command]);
        const { payload } = await Promise.race([
          held,
          run.then((result): never => {
            throw new Error(`${command} ended without being held: ${JSON.stringify(result)}`);
          }),
        ]);
        expect(payload.held.rule, command).toMatch(rule);
        await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "denied" });
        const result = await run;
        expect({ command, code: result.code }).toEqual({ command, code: 1 });
        expect(result.stderr, command).toContain("was denied in the request thread");
        expect(existsSync(canary(n)), command).toBe(false);
    };
    // A few at a time: sshd refuses bursts of unauthenticated connections (MaxStartups).
    for (let start = 0; start < cases.length; start += 4) {
      await Promise.all(cases.slice(start, start + 4).map((entry, k) => check(entry, start + k)));
    }
    const honest = await ssh(secret, [`ls -d ${dir}`]);
    expect(honest.stdout).toBe(`${dir}\n`);
    expect(honest.code).toBe(0);
  }, 180_000);

  it("rm in any disguise is blocked and the file stays; a reviewed command approved in the thread runs", async () => {
    const { secret, who } = await grant();
    const victim = join(dir, "victim");
    writeFileSync(victim, "keep");
    for (const command of [`/bin/rm ${victim}`, `sudo -u root rm ${victim}`, `echo ${victim} | xargs rm`, `bash -c 'r\\m ${victim}'`, `ls; command rm ${victim}`]) {
      const result = await ssh(secret, [command]);
      expect({ command, code: result.code }).toEqual({ command, code: 1 });
      expect(result.stderr, command).toContain('[jitgate] command blocked by rule "^rm "');
      expect(existsSync(victim), command).toBe(true);
    }
    const approvedFile = join(dir, "approved");
    const command = `nice -n 1 touch ${approvedFile}`;
    const held = heldEvent((h) => h.personId === who.id && h.text === command);
    const run = ssh(secret, [command]);
    const { payload } = await held;
    await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "approved" });
    const result = await run;
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("approved; running");
    expect(existsSync(approvedFile)).toBe(true);
  }, 120_000);
});

describe("interactive shells need their own approval", () => {
  it("a shell is held with who, target and client; denied, no shell starts; approved, it runs with lines checked best-effort", async () => {
    const { secret, who, grantId } = await grant();
    const deniedHeld = heldEvent((h) => h.personId === who.id);
    const denied = interactiveSsh(secret, ["-tt"]);
    const { payload: first } = await deniedHeld;
    expect(first.held.rule).toBe("interactive shell");
    expect(first.held.text).toMatch(/^interactive shell \(pty \S+; client SSH-2\.0-OpenSSH[^)]* from 127\.0\.0\.1\)$/);
    expect(first.held.target).toBe("guarded");
    await test.gateway.sessions.decide(lead, { heldId: first.held.id, verdict: "denied" });
    const refused = await denied.exited;
    expect(refused.stdout).toContain("the shell was denied in the request thread");
    expect(refused.code).not.toBe(0);

    const closed = nextEvent<{ session: SessionSnapshot; summary: SessionSummary }>(
      (l) => test.gateway.cluster.events.on("session.closed", l),
      (p) => p.session.grantId === grantId && (p.summary.statementsByKind["exec"] ?? 0) === 0 && p.summary.approved > 0,
      60_000,
    );
    const approvedHeld = heldEvent((h) => h.personId === who.id && h.rule === "interactive shell");
    const shell = interactiveSsh(secret, ["-tt"]);
    const { payload: second } = await approvedHeld;
    await test.gateway.sessions.decide(lead, { heldId: second.held.id, verdict: "approved" });
    await shell.waitFor(/interactive shell, lines checked best-effort/);
    await shell.waitFor(/[#$] $/);
    shell.type("echo typed$((6*7))\r");
    await shell.waitFor(/typed42[\s\S]*[#$] $/);
    // A typed `touch` is still held (best-effort line checks), here denied.
    const lineHeld = heldEvent((h) => h.personId === who.id && h.rule === "^touch ");
    shell.type(`touch ${join(dir, "typed-canary")}\r`);
    const { payload: third } = await lineHeld;
    await test.gateway.sessions.decide(lead, { heldId: third.held.id, verdict: "denied" });
    await shell.waitFor(/line not run: it was denied/);
    // Ctrl-U then Ctrl-_ (readline's undo) would bring the killed `touch` back: refused as unverifiable.
    shell.type(`\rtouch ${join(dir, "undo-canary")}\x15ls\x1f\x1f\r`);
    await shell.waitFor(/line not run: it was edited with history or completion keys/);
    // A prompt set to look like a password prompt: a pasted `touch` is not waved through as a password.
    shell.type("\rPS1='password: '\r");
    await shell.waitFor(/password: $/);
    shell.type(`touch ${join(dir, "prompt-canary")}\r`);
    await shell.waitFor(/line not run: it answered what looks like a password prompt and meets rule "\^touch "/);
    // Output that fakes a full-screen program: a typed `touch` is still refused.
    shell.type("\rPS1='$ '; printf '\\033[?1049h'\r");
    await shell.waitFor(/\x1b\[\?1049h/);
    shell.type(`touch ${join(dir, "screen-canary")}\r`);
    await shell.waitFor(/line not run: it was typed in what looks like a full-screen program and meets rule "\^touch "/);
    shell.type("\rprintf '\\033[?1049l'\r");
    await shell.waitFor(/\x1b\[\?1049l/);
    shell.type("\rexit\r");
    await shell.exited;
    expect(existsSync(join(dir, "typed-canary"))).toBe(false);
    expect(existsSync(join(dir, "undo-canary"))).toBe(false);
    expect(existsSync(join(dir, "prompt-canary"))).toBe(false);
    expect(existsSync(join(dir, "screen-canary"))).toBe(false);
    const { payload } = await closed;
    expect(payload.summary.statementsByKind["interactive shell, lines checked best-effort"]).toBe(1);
    const [started] = await test.gateway.storage.db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.kind, "ssh.shell"), eq(auditEvents.sessionId, payload.session.id)));
    expect(started?.data).toMatchObject({ text: expect.stringMatching(/^interactive shell \(pty /), checks: "interactive shell, lines checked best-effort" });
  }, 120_000);

  it("an exec that starts a shell (`ssh -t target bash -i`) is held as a shell", async () => {
    const { secret, who } = await grant();
    const held = heldEvent((h) => h.personId === who.id);
    const run = ssh(secret, ["-tt", "bash -i"]);
    const { payload } = await held;
    expect(payload.held.rule).toBe("interactive shell");
    expect(payload.held.text).toBe("bash -i");
    await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "denied" });
    const result = await run;
    expect(result.stdout + result.stderr).toContain("was denied in the request thread");
    expect(result.code).not.toBe(0);
  }, 60_000);
});

describe("file transfers (scp, sftp)", () => {
  const scp = (secret: string, from: string, to: string) =>
    runProcess("sshpass", ["-e", "scp", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-P", String(port), from, `guarded@127.0.0.1:${to}`], { env: { SSHPASS: secret }, timeoutMs: 60_000 });
  const sftp = (secret: string, commands: string) =>
    runProcess("sshpass", ["-e", "sftp", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-P", String(port), "guarded@127.0.0.1"], { env: { SSHPASS: secret }, input: commands, timeoutMs: 60_000 });

  it("changes are recorded before they are forwarded; blocked paths are refused, held paths wait for the thread", async () => {
    const { secret, who, grantId } = await grant();
    for (const sub of ["free", "blocked", "held"]) mkdirSync(join(dir, sub), { recursive: true });
    const local = join(dir, "local.txt");
    writeFileSync(local, "twelve bytes");

    // An ordinary upload and a chmod: both recorded as requests, and done.
    const free = join(dir, "free", "a.txt");
    const upload = await scp(secret, local, free);
    expect(upload.code, `${upload.stderr}\n${test.logs.join("")}`).toBe(0);
    await sftp(secret, `chmod 600 ${free}\nrename ${free} ${free}.2\n`);
    expect(statSync(`${free}.2`).mode & 0o777).toBe(0o600);
    const requests = await test.gateway.storage.db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.kind, "ssh.file.request"), eq(auditEvents.grantId, grantId)));
    const data = requests.map((row) => row.data);
    expect(data).toContainEqual(expect.objectContaining({ op: "write", path: free, verdict: "allow" }));
    // scp truncates with a setstat of the size after writing.
    expect(data).toContainEqual(expect.objectContaining({ op: "setstat", path: free, size: 12, verdict: "allow" }));
    expect(data).toContainEqual(expect.objectContaining({ op: "setstat", path: free, mode: 0o600, verdict: "allow" }));
    expect(data).toContainEqual(expect.objectContaining({ op: "rename", path: free, to: `${free}.2`, verdict: "allow" }));

    // A blocked path: refused, nothing written.
    const blocked = join(dir, "blocked", "b.txt");
    const refused = await scp(secret, local, blocked);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr, test.logs.join("")).toMatch(/permission denied/i);
    expect(existsSync(blocked)).toBe(false);

    // sftp's rm, chmod and ln -s on a blocked path: each refused, the file untouched.
    const kept = join(dir, "blocked", "kept.txt");
    writeFileSync(kept, "keep", { mode: 0o644 });
    const session = await sftp(secret, `rm ${kept}\nchmod 777 ${kept}\nln -s ${kept} ${join(dir, "blocked", "link")}\n`);
    expect(session.stderr).toMatch(/permission denied/i);
    expect(existsSync(kept)).toBe(true);
    expect(statSync(kept).mode & 0o777).toBe(0o644);
    expect(existsSync(join(dir, "blocked", "link"))).toBe(false);

    // A held path: denied → nothing written; approved → written.
    const heldPath = join(dir, "held", "c.txt");
    const deniedHold = heldEvent((h) => h.personId === who.id && h.text.includes(heldPath));
    const deniedRun = scp(secret, local, heldPath);
    const { payload: denied } = await deniedHold;
    expect(denied.held).toMatchObject({ rule: "/held/", text: `sftp write ${heldPath}` });
    await test.gateway.sessions.decide(lead, { heldId: denied.held.id, verdict: "denied" });
    expect((await deniedRun).code).not.toBe(0);
    expect(existsSync(heldPath)).toBe(false);
    const approvedHold = heldEvent((h) => h.personId === who.id && h.text.includes(heldPath));
    const approvedRun = scp(secret, local, heldPath);
    const { payload: approved } = await approvedHold;
    await test.gateway.sessions.decide(lead, { heldId: approved.held.id, verdict: "approved" });
    const uploaded = await approvedRun;
    expect(uploaded.code, `${uploaded.stderr}\n${test.logs.join("")}`).toBe(0);
    expect(uploaded.stderr).not.toMatch(/denied|failed|error/i);
    expect(existsSync(heldPath)).toBe(true);
    // The approval covered the rest of the upload (scp's setstat of the size): one hold, not two.
    const holds = await test.gateway.storage.db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.kind, "ssh.file.request"), eq(auditEvents.grantId, grantId)));
    expect(holds.map((row) => row.data).filter((d) => d.path === heldPath && d.approvedEarlier === true)).not.toEqual([]);
  }, 120_000);
});
