/**
 * bench/ssh-proxy: a 200 MB scp (SFTP protocol, as OpenSSH 9 uses it) in both directions,
 *   direct   → a private OpenSSH sshd on loopback
 *   jitgate  → the same sshd through the SSH proxy (grant credential, SFTP audited, rules on)
 * in one run with the rounds interleaved. Prints MB/s and the ratio jitgate / direct.
 * Run: npm run bench:ssh [-- --mb 200 --rounds 3]
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startTestGateway } from "../test/support/gateway.js";
import { SSH_CLIENT_OPTIONS, startPrivateSshd } from "../test/support/sshd.js";

const run = promisify(execFile);
const arg = (name: string, fallback: number) => {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
};
const MB = arg("mb", 200);
const ROUNDS = arg("rounds", 3);

function timed(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`${command} exited ${code}: ${stderr}`))));
  });
}

const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "jitgate-bench-ssh-"));
  chmodSync(dir, 0o755);
  const sshd = await startPrivateSshd("bench");
  const gateway = await startTestGateway(
    "benchssh",
    `
proxy:
  ssh: { listen: 127.0.0.1:0, hostKeyFile: ${join(dir, "gw_host_key")} }
targets:
  - name: web-1
    kind: ssh
    upstream: ssh://${sshd.user}@127.0.0.1:${sshd.port}
    privateKeyFile: ${sshd.gatewayKeyFile}
    hostKey: "${sshd.hostKey}"
    approvers: [lead@example.com]
    commands: { block: ["rm -rf /"], review: ["^sudo "] }
`,
  );
  try {
    const { broker } = gateway.gateway;
    const dev = await broker.identify({ platform: "slack", externalId: "U1", email: "dev@example.com" });
    const lead = await broker.identify({ platform: "slack", externalId: "U2", email: "lead@example.com" });
    const request = await broker.request(dev, { target: "web-1", duration: "1h", reason: "bench" });
    const { connection } = await broker.decide(lead, { requestId: request.id, verdict: "approve" });
    const secret = /\(password: ([^)]+)\)/.exec(connection!.line)![1]!;
    const proxyPort = gateway.gateway.sshProxy!.address.port;

    const source = join(dir, "source.bin");
    const fd = openSync(source, "w");
    const block = randomBytes(1024 * 1024);
    for (let i = 0; i < MB; i++) writeSync(fd, block);
    closeSync(fd);
    const expected = sha(source);

    const direct = (from: string, to: string) =>
      timed("scp", [...SSH_CLIENT_OPTIONS, "-o", "LogLevel=ERROR", "-i", sshd.clientKeyFile, "-P", String(sshd.port), from, to]);
    const proxied = (from: string, to: string) =>
      timed("sshpass", ["-e", "scp", ...SSH_CLIENT_OPTIONS, "-o", "LogLevel=ERROR", "-o", "PubkeyAuthentication=no", "-P", String(proxyPort), from, to], {
        SSHPASS: secret,
      });
    const remote = (host: string, file: string) => `${host}@127.0.0.1:${file}`;
    const results: Record<string, number[]> = { "upload direct": [], "upload jitgate": [], "download direct": [], "download jitgate": [] };
    // A warm-up of each path, then interleaved rounds.
    await direct(source, remote(sshd.user, join(dir, "warm")));
    await proxied(source, remote("web-1", join(dir, "warm")));
    for (let round = 0; round < ROUNDS; round++) {
      const up = join(dir, `up-${round}`);
      results["upload direct"]!.push(await direct(source, remote(sshd.user, up)));
      results["upload jitgate"]!.push(await proxied(source, remote("web-1", `${up}-gw`)));
      results["download direct"]!.push(await direct(remote(sshd.user, source), `${up}-down`));
      results["download jitgate"]!.push(await proxied(remote("web-1", source), `${up}-down-gw`));
      for (const file of [up, `${up}-gw`, `${up}-down`, `${up}-down-gw`]) {
        if (sha(file) !== expected) throw new Error(`${file} does not match the source`);
        rmSync(file);
      }
    }
    const rate = (ms: number) => MB / (ms / 1000);
    process.stdout.write(`\n${MB} MB scp, ${ROUNDS} rounds, median (best) — node ${process.version}, ${(await run("ssh", ["-V"])).stderr.trim()}\n`);
    for (const direction of ["upload", "download"]) {
      const d = results[`${direction} direct`]!;
      const j = results[`${direction} jitgate`]!;
      process.stdout.write(
        `  ${direction.padEnd(9)} direct ${rate(median(d)).toFixed(1).padStart(7)} MB/s (${rate(Math.min(...d)).toFixed(1)})   ` +
          `jitgate ${rate(median(j)).toFixed(1).padStart(7)} MB/s (${rate(Math.min(...j)).toFixed(1)})   ratio ${(median(d) / median(j)).toFixed(2)}×\n`,
      );
    }
  } finally {
    await gateway.close();
    await sshd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
