import { timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Duplex } from "node:stream";
import ssh2, { type Client, type Connection, type GetStreamCallback } from "ssh2";
import type { SshTargetConfig } from "../../config/schema.js";
import { sshFingerprint } from "../../broker/ssh-keys.js";
import { hostKeyAlgorithms, parsePinnedHostKey } from "./host-key.js";

/** The target presented another host key than the one pinned in the configuration. */
export class HostKeyMismatch extends Error {
  constructor(
    readonly target: string,
    readonly expected: string,
    readonly presented: string,
  ) {
    super(`the host key of ${target} (${presented}) does not match the pinned key (${expected})`);
  }
}

export interface UpstreamTarget {
  name: string;
  host: string;
  port: number;
  username: string;
  privateKey: Buffer;
  pinned: { type: string; blob: Buffer; fingerprint: string };
}

export function resolveUpstream(target: SshTargetConfig): UpstreamTarget {
  const url = new URL(target.upstream);
  return {
    name: target.name,
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port: url.port ? Number(url.port) : 22,
    username: decodeURIComponent(url.username) || "root",
    privateKey: readFileSync(target.privateKeyFile),
    pinned: parsePinnedHostKey(target.hostKey),
  };
}

/**
 * A gateway-side agent for the upstream connection that hands agent requests back to the user's
 * own agent over their connection (`auth-agent@openssh.com`), when the target allows agent
 * forwarding. The gateway never signs with it itself.
 */
class ForwardedAgent extends ssh2.BaseAgent {
  constructor(private readonly client: Connection) {
    super();
  }
  override getIdentities(cb: (error: Error | null, keys?: Buffer[]) => void): void {
    cb(new Error("the gateway does not use forwarded agents itself"));
  }
  override sign(_key: unknown, _data: Buffer, options: unknown, cb?: (error: Error | null, signature?: Buffer) => void): void {
    const callback = typeof options === "function" ? (options as typeof cb) : cb;
    callback?.(new Error("the gateway does not use forwarded agents itself"));
  }
  override getStream(cb: GetStreamCallback): void {
    // Connection#openssh_authAgent exists in ssh2 1.x but is missing from @types/ssh2.
    const client = this.client as unknown as { openssh_authAgent(cb: (error: Error | undefined, channel: Duplex) => void): void };
    client.openssh_authAgent((error, channel) => cb(error ?? null, channel));
  }
}

/**
 * Opens the gateway's own SSH connection to the target with the target's private key, accepting
 * only the pinned host key: no trust on first use.
 */
export function connectUpstream(
  target: UpstreamTarget,
  options: { forwardAgentOf?: Connection | undefined; readyTimeoutMs?: number } = {},
): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let mismatch: HostKeyMismatch | undefined;
    const fail = (error: Error) => {
      client.removeAllListeners("ready");
      client.end();
      reject(mismatch ?? error);
    };
    client.once("ready", () => {
      client.removeListener("error", fail);
      client.on("error", () => {}); // later errors end the session through "close"
      resolve(client);
    });
    client.once("error", fail);
    client.connect({
      host: target.host,
      port: target.port,
      username: target.username,
      privateKey: target.privateKey,
      authHandler: ["publickey"],
      readyTimeout: options.readyTimeoutMs ?? 10_000,
      keepaliveInterval: 15_000,
      algorithms: { serverHostKey: hostKeyAlgorithms(target.pinned.type) as never },
      ...(options.forwardAgentOf ? { agent: new ForwardedAgent(options.forwardAgentOf) } : {}),
      hostVerifier: (key: Buffer) => {
        const ok = key.length === target.pinned.blob.length && timingSafeEqual(key, target.pinned.blob);
        if (!ok) mismatch = new HostKeyMismatch(target.name, target.pinned.fingerprint, sshFingerprint(key));
        return ok;
      },
    });
  });
}
