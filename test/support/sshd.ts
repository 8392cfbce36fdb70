import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./ports.js";

const run = promisify(execFile);

export interface PrivateSshd {
  port: number;
  /** The login user on it (the current user: no system user is created). */
  user: string;
  dir: string;
  /** `ssh-ed25519 AAAA…` of its host key, to pin. */
  hostKey: string;
  /** The key the gateway logs in with (authorized on this sshd). */
  gatewayKeyFile: string;
  /** What sshd has logged so far (LogLevel DEBUG1). */
  log(): string;
  /** A key for direct logins in tests and benchmarks (authorized too). */
  clientKeyFile: string;
  /** Prepended to PATH in its sessions: tests drop helper commands here (a fake `sudo`). */
  binDir: string;
  stop(): Promise<void>;
}

async function keygen(file: string, comment: string): Promise<void> {
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
}

function waitForPort(port: number, child: ChildProcess, stderr: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`sshd exited (${child.exitCode}): ${stderr()}`));
      const socket = connect(port, "127.0.0.1");
      socket.once("data", () => {
        socket.destroy();
        resolve();
      });
      socket.once("error", () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`sshd did not listen on ${port}: ${stderr()}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/**
 * A real OpenSSH server of the test's own: its own config, host key, authorized keys and pid file
 * in a temporary directory, on a free loopback port, logging in as the current user with keys only.
 * Nothing of the system's ssh configuration is read or changed. (sshd needs its privilege
 * separation directory /run/sshd, which is created when missing, as the Debian service would.)
 */
export async function startPrivateSshd(label: string, options: { sftpSubsystem?: (binDir: string) => string } = {}): Promise<PrivateSshd> {
  const dir = mkdtempSync(join(tmpdir(), `jitgate-sshd-${label}-`));
  chmodSync(dir, 0o755);
  const binDir = join(dir, "bin");
  mkdirSync(binDir);
  await keygen(join(dir, "host_key"), "test sshd host key");
  await keygen(join(dir, "gateway_key"), "jitgate gateway");
  await keygen(join(dir, "client_key"), "direct test client");
  writeFileSync(
    join(dir, "authorized_keys"),
    readFileSync(join(dir, "gateway_key.pub"), "utf8") + readFileSync(join(dir, "client_key.pub"), "utf8"),
    { mode: 0o600 },
  );
  const user = userInfo().username;
  const port = await freePort();
  const config = join(dir, "sshd_config");
  writeFileSync(
    config,
    [
      `ListenAddress 127.0.0.1`,
      `HostKey ${join(dir, "host_key")}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      `PermitRootLogin prohibit-password`,
      `PubkeyAuthentication yes`,
      `PasswordAuthentication no`,
      `KbdInteractiveAuthentication no`,
      `UsePAM no`,
      `StrictModes no`,
      `AllowTcpForwarding yes`,
      `AllowAgentForwarding yes`,
      `PrintMotd no`,
      `PrintLastLog no`,
      // DEBUG1 names each channel request the server receives, so tests can see what reached it.
      `LogLevel DEBUG1`,
      `SetEnv PATH=${binDir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`,
      `Subsystem sftp ${options.sftpSubsystem?.(binDir) ?? "internal-sftp"}`,
      "",
    ].join("\n"),
  );
  if (!existsSync("/run/sshd")) mkdirSync("/run/sshd", { mode: 0o755, recursive: true });
  const child = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config, "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  await waitForPort(port, child, () => stderr);
  const [type, base64] = readFileSync(join(dir, "host_key.pub"), "utf8").trim().split(/\s+/);
  return {
    port,
    user,
    dir,
    hostKey: `${type} ${base64}`,
    gatewayKeyFile: join(dir, "gateway_key"),
    clientKeyFile: join(dir, "client_key"),
    binDir,
    log: () => stderr,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once("exit", resolve));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Options that make the ssh client quiet about (and indifferent to) the throwaway host keys. */
export const SSH_CLIENT_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10"];
