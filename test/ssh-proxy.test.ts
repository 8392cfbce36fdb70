import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand } from "../src/bot/commands.js";
import type { HeldSnapshot, Person, SessionSnapshot, SessionSummary } from "../src/broker/index.js";
import { auditEvents, sessionRecordings, sessions } from "../src/db/schema.js";
import { parseCast } from "../src/proxy/recording/asciicast.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { eventually, FakeSlack, messageText } from "./support/fake-slack.js";
import { nextEvent, WIDE_LATENESS_MS } from "./support/jobs.js";
import { interactiveProcess, runProcess } from "./support/processes.js";
import { SSH_CLIENT_OPTIONS, startPrivateSshd, type PrivateSshd } from "./support/sshd.js";

const execFileAsync = promisify(execFile);
const CLI = join(import.meta.dirname, "..", "src", "cli.ts");

const APPROVALS = "C0SSHAPPROVALS";
let sshd: PrivateSshd;
/** A target whose SFTP server ends its output a second before it exits (its exit status comes after its EOF). */
let lateExitSshd: PrivateSshd;
let fake: FakeSlack;
let test: TestGateway;
let lead: Person;
let port: number;
let dir: string;

/** An ssh client through the proxy that we type into. */
function interactiveSsh(secret: string, target: string, args: string[]) {
  return interactiveProcess(
    "sshpass",
    ["-e", "ssh", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-p", String(port), `${target}@127.0.0.1`, ...args],
    { SSHPASS: secret },
  );
}

/** `ssh` through the proxy with a password (the grant's credential), via sshpass. */
function sshWithSecret(secret: string, target: string, args: string[], options: { input?: string; timeoutMs?: number } = {}) {
  return runProcess(
    "sshpass",
    ["-e", "ssh", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-p", String(port), `${target}@127.0.0.1`, ...args],
    { env: { SSHPASS: secret }, ...options },
  );
}

/** `ssh` through the proxy with ssh options before the destination (`-W`, `-R`, `-A`). */
function sshOptionsWithSecret(secret: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runProcess("sshpass", ["-e", "ssh", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-p", String(port), ...args], {
    env: { SSHPASS: secret, ...env },
    input: "",
  });
}

/** Runs `use` with a private ssh-agent listening on a socket of its own. */
async function withSshAgent<T>(use: (socket: string) => Promise<T>): Promise<T> {
  const agentDir = mkdtempSync(join(tmpdir(), "jitgate-agent-"));
  const socket = join(agentDir, "agent.sock");
  const agent = spawn("ssh-agent", ["-D", "-a", socket], { stdio: "ignore" });
  try {
    await eventually(() => existsSync(socket), 10_000, "the ssh-agent socket");
    return await use(socket);
  } finally {
    agent.kill();
    rmSync(agentDir, { recursive: true, force: true });
  }
}

let people = 0;
async function person(): Promise<Person> {
  people += 1;
  return test.gateway.broker.identify({ platform: "slack", externalId: `U${people}`, email: `dev${people}@example.com`, displayName: `Dev ${people}` });
}

/** A grant for `who` on `target`; returns the secret from the connection line. */
async function grant(who: Person, duration = "1h", target = "web-1", origin?: "slack") {
  const { broker } = test.gateway;
  const request = await broker.request(who, { target, duration, reason: "INC-1 check web", ...(origin ? { origin } : {}) });
  const result = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
  const secret = /\(password: ([^)]+)\)/.exec(result.connection!.line)![1]!;
  return { secret, grant: result.grant!, line: result.connection!.line, requestId: request.id };
}

const heldEvent = (predicate: (held: HeldSnapshot) => boolean = () => true) =>
  nextEvent<{ held: HeldSnapshot }>((l) => test.gateway.cluster.events.on("statement.held", l), (p) => predicate(p.held), 20_000);
const closedEvent = (grantId: string) =>
  nextEvent<{ session: SessionSnapshot; summary: SessionSummary }>(
    (l) => test.gateway.cluster.events.on("session.closed", l),
    (p) => p.session.grantId === grantId,
    20_000,
  );

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-sshproxy-"));
  chmodSync(dir, 0o755);
  sshd = await startPrivateSshd("proxy");
  // A `sudo` for the target's sessions (the test machine has none): it says that it ran.
  writeFileSync(join(sshd.binDir, "sudo"), '#!/bin/sh\necho "sudo ran: $*"\nexec "$@"\n', { mode: 0o755 });
  await execFileAsync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "other_host_key")]);
  lateExitSshd = await startPrivateSshd("late-exit", {
    sftpSubsystem: (binDir) => {
      const wrapper = join(binDir, "sftp-late-exit");
      writeFileSync(wrapper, "#!/bin/sh\n/usr/lib/openssh/sftp-server\nexec >&- 2>&-\nsleep 1\n", { mode: 0o755 });
      return wrapper;
    },
  });
  // Requests made with origin "slack" get a thread in this fake workspace's approval channel.
  fake = new FakeSlack([{ id: "ULEAD", email: "lead@example.com", realName: "Lead" }], "xoxb-ssh-proxy");
  await fake.start();
  const otherHostKey = readFileSync(join(dir, "other_host_key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ");
  test = await startTestGateway(
    "sshproxy",
    `
defaults: { reviewTimeout: 4s }
slack:
  botToken: xoxb-ssh-proxy
  signingSecret: ssh-proxy-signing-secret
  apiUrl: ${fake.apiUrl}
  approvalChannel: ${APPROVALS}
proxy:
  ssh: { listen: 127.0.0.1:0, publicAddress: ssh-gw.example.com:2222, hostKeyFile: ${join(dir, "gateway", "ssh_host_ed25519_key")} }
targets:
  - name: web-1
    kind: ssh
    upstream: ssh://${sshd.user}@127.0.0.1:${sshd.port}
    privateKeyFile: ${sshd.gatewayKeyFile}
    hostKey: "${sshd.hostKey}"
    approvers: [lead@example.com]
    # Shells start without a hold here: held shells are tested in ssh-command-rules.test.ts.
    commands: { block: ["rm -rf /"], review: ["^sudo "], shell: allow }
  - name: web-repinned
    kind: ssh
    upstream: ssh://${sshd.user}@127.0.0.1:${sshd.port}
    privateKeyFile: ${sshd.gatewayKeyFile}
    hostKey: "${otherHostKey}"
    approvers: [lead@example.com]
  - name: web-late-exit
    kind: ssh
    upstream: ssh://${lateExitSshd.user}@127.0.0.1:${lateExitSshd.port}
    privateKeyFile: ${lateExitSshd.gatewayKeyFile}
    hostKey: "${lateExitSshd.hostKey}"
    approvers: [lead@example.com]
  - name: web-forwarding
    kind: ssh
    upstream: ssh://${sshd.user}@127.0.0.1:${sshd.port}
    privateKeyFile: ${sshd.gatewayKeyFile}
    hostKey: "${sshd.hostKey}"
    approvers: [lead@example.com]
    allowPortForwarding: true
    allowAgentForwarding: true
`,
  );
  port = test.gateway.sshProxy!.address.port;
  lead = await test.gateway.broker.identify({ platform: "slack", externalId: "ULEAD", email: "lead@example.com", displayName: "Lead" });
});

afterAll(async () => {
  await test?.close();
  await fake?.stop();
  await sshd?.stop();
  await lateExitSshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("admission", () => {
  it("ssh … echo hi with the grant's credential; the host key persists with mode 0600", async () => {
    const dev = await person();
    const { secret, line } = await grant(dev);
    expect(line).toMatch(/^ssh -p 2222 web-1@ssh-gw\.example\.com/);
    const result = await sshWithSecret(secret, "web-1", ["echo", "hi"]);
    expect(result.stdout).toBe("hi\n");
    expect(result.code).toBe(0);
    const keyFile = join(dir, "gateway", "ssh_host_ed25519_key");
    expect(readFileSync(keyFile, "utf8")).toContain("OPENSSH PRIVATE KEY");
    expect((await import("node:fs")).statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  it("refuses without a live grant, naming the target and how to request access; a wrong credential too", async () => {
    const result = await sshWithSecret("no-such-credential", "web-1", ["echo", "hi"]);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("not the credential of a live access grant on web-1");
    expect(result.stderr).toContain("request access with: /access request web-1 <duration> <reason>");

    const dev = await person();
    const { secret } = await grant(dev, "30m");
    const wrong = await sshWithSecret(`${secret}x`, "web-1", ["echo", "hi"]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stdout).toBe("");
    expect(wrong.stderr).toContain("not the credential of a live access grant on web-1");

    const unknown = await sshWithSecret(secret, "nope-1", ["echo", "hi"]);
    // An unknown target (the SSH user name) is refused like a wrong credential: no target names leak.
    expect(unknown.stderr).toContain("not the credential of a live access grant on nope-1");
  });

  it("port forwarding and agent forwarding are refused on a target that does not allow them", async () => {
    const dev = await person();
    const { secret } = await grant(dev);
    const through = (args: string[], env: NodeJS.ProcessEnv = {}) => sshOptionsWithSecret(secret, args, env);
    // -W opens a direct-tcpip channel at once (stdio forwarding).
    const forward = await through(["-W", "127.0.0.1:5432", "web-1@127.0.0.1"]);
    expect(forward.code).not.toBe(0);
    expect(forward.stderr).toMatch(/open failed|administratively prohibited/);
    // -R asks for a tcpip-forward global request; with ExitOnForwardFailure the client gives up.
    const remote = await through(["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", "web-1@127.0.0.1", "echo", "unreachable"]);
    expect(remote.code).not.toBe(0);
    expect(remote.stderr).toMatch(/remote port forwarding failed/i);
    // With an agent offered (-A), the target still sees no forwarded agent.
    const agentRun = await withSshAgent((socket) =>
      through(["-A", "web-1@127.0.0.1", "echo agent:${SSH_AUTH_SOCK:-none}"], { SSH_AUTH_SOCK: socket }),
    );
    expect(agentRun.stdout).toBe("agent:none\n");
  });

  it("port and agent forwarding work on a target that allows them", async () => {
    const dev = await person();
    const { secret } = await grant(dev, "1h", "web-forwarding");
    const through = (args: string[], env: NodeJS.ProcessEnv = {}) => sshOptionsWithSecret(secret, args, env);
    // -W to the target's own sshd: its banner comes back through the forwarded channel.
    const forward = await through(["-W", `127.0.0.1:${sshd.port}`, "web-forwarding@127.0.0.1"]);
    expect(forward.stdout).toMatch(/^SSH-2\.0-OpenSSH/);
    const agentRun = await withSshAgent((socket) =>
      through(["-A", "web-forwarding@127.0.0.1", "echo agent:${SSH_AUTH_SOCK:+forwarded}"], { SSH_AUTH_SOCK: socket }),
    );
    expect(agentRun.stdout).toBe("agent:forwarded\n");
  });

  it("a registered public key logs in under a live grant, and only then", async () => {
    const dev = await person();
    const keyFile = join(dir, "dev_key");
    await execFileAsync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "dev@laptop", "-f", keyFile]);
    const context = { broker: test.gateway.broker, person: dev, command: "/access", origin: "slack" as const };
    const added = await runCommand(context, `key add ${readFileSync(`${keyFile}.pub`, "utf8")}`);
    expect(added.view.text).toMatch(/SSH key SHA256:\S+ registered \(key_/);
    expect((await runCommand(context, "key add nonsense")).view.text).toMatch(/not an SSH public key/i);
    expect((await runCommand(context, "key list")).view.lines?.join("\n") ?? "").toContain("dev@laptop");
    const withKey = (target = "web-1") =>
      runProcess("ssh", [...SSH_CLIENT_OPTIONS, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", keyFile, "-p", String(port), `${target}@127.0.0.1`, "echo", "by-key"]);
    const refused = await withKey();
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(`no live access grant for ${dev.email} on web-1; request one with: /access request web-1 <duration> <reason>`);
    await grant(dev);
    expect((await withKey()).stdout).toBe("by-key\n");
    const fingerprint = /SHA256:\S+/.exec(added.view.text)![0];
    expect((await runCommand(context, `key remove ${fingerprint}`)).view.text).toContain("removed");
    expect((await withKey()).code).not.toBe(0);
  });

  it("a target presenting another host key than the pinned one is refused and audited", async () => {
    const dev = await person();
    const { secret, grant: g } = await grant(dev, "1h", "web-repinned");
    const result = await sshWithSecret(secret, "web-repinned", ["echo", "hi"]);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("does not match the key pinned in jitgate's configuration");
    const [event] = await test.gateway.storage.db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.kind, "ssh.host_key_mismatch"), eq(auditEvents.grantId, g.id)));
    expect(event?.data).toMatchObject({ presented: expect.stringMatching(/^SHA256:/), expected: expect.stringMatching(/^SHA256:/) });
    expect(event!.data.presented).not.toBe(event!.data.expected);
  });
});

describe("command rules", () => {
  it("rm -rf / is blocked: not run, the user sees why, the thread gets a note", async () => {
    const dev = await person();
    const { secret } = await grant(dev);
    const blocked = nextEvent<{ rule: string; text: string }>((l) => test.gateway.cluster.events.on("statement.blocked", l), () => true);
    const result = await sshWithSecret(secret, "web-1", ["rm -rf / --no-preserve-root"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('[jitgate] command blocked by rule "rm -rf /"');
    expect((await blocked).payload).toMatchObject({ rule: "rm -rf /", text: "rm -rf / --no-preserve-root" });
  });

  it("sudo ls is held, approved in the thread, then runs", async () => {
    const dev = await person();
    const { secret } = await grant(dev);
    const held = heldEvent((h) => h.personId === dev.id);
    const pending = sshWithSecret(secret, "web-1", [`sudo ls ${sshd.dir}`]);
    const { payload } = await held;
    expect(payload.held).toMatchObject({ target: "web-1", rule: "^sudo ", text: `sudo ls ${sshd.dir}` });
    await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "approved" });
    const result = await pending;
    expect(result.stderr).toContain("[jitgate] waiting for approval in the request thread");
    expect(result.stdout).toContain(`sudo ran: ls ${sshd.dir}`);
    expect(result.stdout).toContain("sshd_config");
    expect(result.code).toBe(0);
  });

  it("a denied command does not run", async () => {
    const dev = await person();
    const { secret } = await grant(dev);
    const marker = join(dir, "denied-marker");
    const held = heldEvent((h) => h.personId === dev.id);
    const pending = sshWithSecret(secret, "web-1", [`sudo touch ${marker}`]);
    const { payload } = await held;
    await test.gateway.sessions.decide(lead, { heldId: payload.held.id, verdict: "denied" });
    const result = await pending;
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("was denied in the request thread");
    expect(result.stdout).toBe("");
    expect(() => readFileSync(marker)).toThrow();
  });
});

describe("interactive shells and recording", () => {
  it("records a shell with a pty as asciicast; typed lines are classified at Enter; the cast replays the output", async () => {
    const dev = await person();
    const { secret, grant: g } = await grant(dev);
    const closed = closedEvent(g.id);
    // -tt: a pty on the target even though our stdin is a pipe. Keys as a terminal sends them,
    // each line typed once the prompt is there.
    const shell = interactiveSsh(secret, "web-1", ["-tt"]);
    const prompt = /[#$] $/;
    let typed = "";
    const type = (keys: string) => {
      typed += keys;
      shell.type(keys);
    };
    await shell.waitFor(prompt);
    // A login shell resets PATH (/etc/profile): put the fake sudo back in front.
    type(`export PATH=${sshd.binDir}:$PATH\r`);
    await shell.waitFor(prompt);
    type("echo rec$((40+2))\r");
    await shell.waitFor(/rec42[\s\S]*[#$] $/);
    // Edited before Enter: what runs is what the shadow line says.
    type("rm -rf /tmp/nothing-here-x\x7f\r");
    // The line is discarded with ^C. Bash normally draws a new prompt; when the ^C lands while bash
    // is still echoing the line (a loaded machine), the terminal's flush on INTR can eat that prompt,
    // so the next line is typed once the discard is seen rather than the prompt.
    await shell.waitFor(/line not run: blocked by rule "rm -rf \/"[\s\S]*\^C/);
    const held = heldEvent((h) => h.personId === dev.id);
    type("sudo echo from-the-shell\r");
    await shell.waitFor(/waiting for approval in the request thread/);
    const { payload: heldPayload } = await held;
    expect(heldPayload.held.text).toBe("sudo echo from-the-shell");
    await test.gateway.sessions.decide(lead, { heldId: heldPayload.held.id, verdict: "approved" });
    await shell.waitFor(/sudo ran: echo from-the-shell[\s\S]*[#$] $/);
    type("exit\r");
    const result = await shell.exited;
    expect(result.code).toBe(0);
    const { payload } = await closed;
    expect(payload.summary).toMatchObject({ blocked: 1, held: 1, approved: 1, statementsByKind: { shell: 4 } });
    expect(payload.summary.bytesIn).toBe(typed.length);
    expect(payload.summary.bytesOut).toBeGreaterThan(0);
    const [row] = await test.gateway.storage.db.select().from(sessions).where(eq(sessions.id, payload.session.id));
    expect(row!.summary).toMatchObject({ recordingId: row!.id });
    const [recording] = await test.gateway.storage.db.select().from(sessionRecordings).where(eq(sessionRecordings.sessionId, row!.id));
    const cast = parseCast(recording!.cast);
    expect(cast.header).toMatchObject({ version: 2, width: 80, height: 24 });
    expect(cast.events.some(([, code, data]) => code === "i" && data.includes("echo rec$((40+2))"))).toBe(true);
    expect(cast.events.filter(([, code]) => code === "o").map(([, , data]) => data).join("")).toContain("rec42");

    const out = join(dir, "session.cast");
    const configFile = join(dir, "jitgate.yaml");
    writeFileSync(configFile, "database: ${DATABASE_URL}\n");
    const env = { JITGATE_CONFIG: configFile, DATABASE_URL: test.gateway.config.database! };
    const written = await runProcess(process.execPath, ["--import", "tsx", CLI, "replay", row!.id, "--out", out], {
      env,
      timeoutMs: 20_000,
    });
    expect(written.stderr).toContain(`wrote ${out}`);
    expect(readFileSync(out, "utf8")).toBe(recording!.cast);
    const played = await runProcess(process.execPath, ["--import", "tsx", CLI, "replay", row!.id, "--speed", "50"], {
      env,
      timeoutMs: 20_000,
    });
    expect(played.stdout).toContain("rec42");
  }, 90_000);
});

describe("an allowed interactive shell is said in the request's thread", () => {
  it("the thread gets who started a shell on which target, and that its lines are checked best-effort", async () => {
    const dev = await person();
    const { secret, grant: g, requestId } = await grant(dev, "1h", "web-1", "slack");
    const root = await eventually(() => fake.rootsIn(APPROVALS).find((m) => messageText(m).includes(requestId)), 10_000, "the request's root message");
    const closed = closedEvent(g.id);
    const shell = interactiveSsh(secret, "web-1", ["-tt"]);
    await shell.waitFor(/[#$] $/);
    shell.type("exit\r");
    await shell.exited;
    await closed;
    const note = await eventually(
      () => fake.thread(APPROVALS, root.ts).map(messageText).find((text) => text.includes("started an interactive shell")),
      10_000,
      "the shell note in the thread",
    );
    expect(note).toContain(`${dev.displayName} started an interactive shell on web-1: interactive shell, lines checked best-effort`);
    expect(note).toMatch(/interactive shell \(pty /);
  });
});

describe("expiry", () => {
  it("a grant's live session ends at expiry, never before, with a visible line", async () => {
    const dev = await person();
    // Long enough for ssh to log in before expiry on a loaded machine; the command outlives the
    // grant by far, so only the expiry can end it within the wide bound.
    const { secret, grant: g } = await grant(dev, "5s");
    const closed = closedEvent(g.id);
    const result = await sshWithSecret(secret, "web-1", ["-tt", "sleep 60"], { timeoutMs: 50_000 });
    expect(result.stdout + result.stderr).toContain("[jitgate] access grant expired");
    expect(result.endedAt - g.expiresAt.getTime()).toBeGreaterThanOrEqual(0);
    expect(result.endedAt - g.expiresAt.getTime()).toBeLessThan(WIDE_LATENESS_MS);
    expect((await closed).payload.summary).toMatchObject({ endReason: "expired" });
  }, 60_000);

  it("revoke ends the live session at once", async () => {
    const dev = await person();
    const { secret, grant: g } = await grant(dev);
    const client = interactiveSsh(secret, "web-1", ["echo started; sleep 50"]);
    await client.waitFor(/started/);
    const revokedAt = Date.now();
    await test.gateway.broker.revoke(lead, { grantId: g.id, reason: "done" });
    const result = await client.exited;
    expect(result.stderr).toContain("[jitgate] access grant revoked");
    // Wide: the command would run 50 s more; the revoke, not its end, closed the session.
    expect(Date.now() - revokedAt).toBeLessThan(WIDE_LATENESS_MS);
  }, 60_000);
});

describe("pty, window size and exit status", () => {
  it("forwards the window size (at start and on window-change) and the remote exit status", async () => {
    const dev = await person();
    const { secret } = await grant(dev);
    const exited = await sshWithSecret(secret, "web-1", ["exit 7"]);
    expect(exited.code).toBe(7);

    // ssh2's client drives the pty directly: open a shell at 24×80, resize to 40×120, ask stty.
    const { Client } = await import("ssh2");
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      client.once("ready", () => resolve()).once("error", reject);
      client.connect({ host: "127.0.0.1", port, username: "web-1", password: secret, hostVerifier: () => true });
    });
    try {
      const output = await new Promise<string>((resolve, reject) => {
        client.shell({ rows: 24, cols: 80, term: "xterm" }, (error, stream) => {
          if (error) return reject(error);
          let text = "";
          let asked = 0;
          const ask = () => {
            asked += 1;
            stream.write('echo "size:$(stty size)"\r');
          };
          // Each answer triggers the next step: the first (24 80) the resize; any later 24 80 (the
          // shell answered before the window-change reached the pty) asks again.
          stream.on("data", (chunk: Buffer) => {
            text += chunk.toString();
            if (/size:24 80[\s\S]*size:40 120/.test(text)) {
              stream.end("exit\r");
              resolve(text);
              return;
            }
            const answers = text.match(/size:24 80/g)?.length ?? 0;
            if (answers === 1 && asked === 1) {
              stream.setWindow(40, 120, 0, 0);
              ask();
            } else if (answers >= asked && asked > 1 && asked < 20) ask();
          });
          stream.on("close", () => resolve(text));
          ask();
        });
      });
      expect(output).toMatch(/size:24 80/);
      expect(output).toMatch(/size:40 120/);
    } finally {
      client.end();
    }
  });
});

describe("signals", () => {
  it("forwards a signal request to the target's sshd", async () => {
    const dev = await person();
    const { secret } = await grant(dev);
    const { Client } = await import("ssh2");
    const client = new Client();
    await new Promise<void>((resolve, reject) => {
      client.once("ready", () => resolve()).once("error", reject);
      client.connect({ host: "127.0.0.1", port, username: "web-1", password: secret, hostVerifier: () => true });
    });
    try {
      const signals = () => sshd.log().split("req signal").length - 1;
      const before = signals();
      const stream = await new Promise<import("ssh2").ClientChannel>((resolve, reject) => {
        client.exec("echo running; sleep 50", (error, channel) => {
          if (error) return reject(error);
          // The command printing is the sign the upstream channel is open and can take the signal.
          channel.once("data", () => resolve(channel));
        });
      });
      stream.signal("TERM");
      // The request reached the target's sshd on the upstream channel. (This Debian sshd then does
      // not act on it for a command without a pty, with or without jitgate in between.)
      await eventually(() => signals() > before, 10_000, "the signal request in the target's sshd log");
      expect(signals()).toBe(before + 1);
    } finally {
      client.end();
    }
  });
});

describe("file transfer", () => {
  it("scp succeeds when the target's SFTP server sends its exit status after its EOF", async () => {
    // The client's channel must stay open until the target's closes: ended at the target's EOF, the
    // OpenSSH client never gets the exit status, exits 255, and scp exits 1 after a whole transfer.
    const dev = await person();
    const { secret } = await grant(dev, "1h", "web-late-exit");
    const source = join(dir, "late-exit.txt");
    writeFileSync(source, "sent before the exit status\n");
    const destination = join(dir, "late-exit.copy");
    const result = await runProcess(
      "sshpass",
      ["-e", "scp", "-v", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-P", String(port), source, `web-late-exit@127.0.0.1:${destination}`],
      { env: { SSHPASS: secret } },
    );
    expect(result.code, `${result.stderr}\n${test.logs.join("")}`).toBe(0);
    expect(result.stderr).toContain("Exit status 0");
    expect(readFileSync(destination, "utf8")).toBe("sent before the exit status\n");
  });

  it("scp of a 10 MB file arrives intact and the write is audited with path and size", async () => {
    const dev = await person();
    const { secret, grant: g } = await grant(dev);
    const source = join(dir, "ten-mb.bin");
    const content = randomBytes(10 * 1024 * 1024);
    writeFileSync(source, content);
    const destination = join(dir, "ten-mb.copy");
    const closed = closedEvent(g.id);
    const result = await runProcess(
      "sshpass",
      ["-e", "scp", "-v", ...SSH_CLIENT_OPTIONS, "-o", "PubkeyAuthentication=no", "-P", String(port), source, `web-1@127.0.0.1:${destination}`],
      { env: { SSHPASS: secret } },
    );
    expect(result.code, `${result.stderr}\n${test.logs.join("")}`).toBe(0);
    const sha = (buffer: Buffer) => createHash("sha256").update(buffer).digest("hex");
    expect(sha(readFileSync(destination))).toBe(sha(content));
    const { payload } = await closed;
    expect(payload.summary.bytesIn).toBeGreaterThan(10 * 1024 * 1024);
    const files = await eventually(async () => {
      const rows = await test.gateway.storage.db
        .select()
        .from(auditEvents)
        .where(and(eq(auditEvents.kind, "ssh.file"), eq(auditEvents.sessionId, payload.session.id)));
      return rows.length > 0 ? rows : undefined;
    }, 10_000, "the ssh.file audit event");
    expect(files.map((f) => f.data)).toContainEqual({ op: "write", path: destination, bytes: 10 * 1024 * 1024, ok: true });
  });
});
