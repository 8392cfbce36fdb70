import type { AddressInfo, Server } from "node:net";
import type { Redis } from "ioredis";
import ssh2, { type AuthContext, type Client, type Connection } from "ssh2";
import type { Broker, Grant } from "../../broker/broker.js";
import type { SessionSnapshot, TypedEvents } from "../../broker/events.js";
import type { SessionBroker } from "../../broker/sessions.js";
import type { SshKeys } from "../../broker/ssh-keys.js";
import type { Config, SshTargetConfig } from "../../config/schema.js";
import { listenOn } from "../../infra/listen.js";
import { holdForDecision } from "../held-decision.js";
import { classifyCommand, compileShellRules, hasShellRules, loadShellGrammar, type CompiledShellRules } from "../../rules/shell-classifier.js";
import { compileFileRules, matchFileRule, type CompiledFileRules } from "../../rules/file-rules.js";
import { loadOrCreateHostKey } from "./host-key.js";
import { SshProxySession, type SshSessionHooks, type SshSessionSummary } from "./session.js";
import { connectUpstream, HostKeyMismatch, resolveUpstream, type UpstreamTarget } from "./upstream.js";
import { sendUserauthBanner } from "./userauth-banner.js";
import { Admission, AdmissionRefused, type Refusal } from "../admission.js";
import { looksLikeJwt, type OidcVerifier } from "../../oidc/verifier.js";

export interface SshProxyOptions {
  broker: Broker;
  sessions: SessionBroker;
  keys: SshKeys;
  /** Domain events from every replica. */
  events: TypedEvents;
  redis: Redis;
  /** The deployment's Redis prefix. */
  redisPrefix: string;
  /** `proxy.loginFailures`. */
  loginFailures: Config["proxy"]["loginFailures"];
  config: NonNullable<Config["proxy"]["ssh"]>;
  targets: Config["targets"];
  /** The command users type to ask for access, for refusals' hints. */
  requestCommand?: string;
  /** How long a connection may take to authenticate. */
  loginGraceMs?: number;
  /** Checks a password shaped like a JWT as an OIDC ID token (absent when `oidc:` is not configured). */
  oidc?: OidcVerifier | undefined;
  onError?: (error: unknown, where: string) => void;
  /** Test hook: runs between opening a session's record and binding it under its grant (see Admission). */
  onOpened?: (session: SessionSnapshot) => Promise<void> | void;
}

interface TargetRuntime {
  config: SshTargetConfig;
  rules: CompiledShellRules;
  files: CompiledFileRules;
  upstream: UpstreamTarget;
}

/** A refusal at login reads as a userauth banner (RFC 4252 §5.4); the client then says "Permission denied". */
const bannerText = (refusal: Refusal) => `jitgate: ${refusal.message}${refusal.hint ? `; ${refusal.hint}` : ""}`;

const LOGIN_METHODS: AuthContext["method"][] = ["publickey", "keyboard-interactive", "password"];

const MAX_PASSWORD_ATTEMPTS = 3;

/** One connection's login: whether the refusal banner went out, and whether the login is over. */
interface LoginState {
  banner: boolean;
  over: boolean;
}

/** Each connection's SSH identification string (`SSH-2.0-OpenSSH_9.6`), for held shells. */
const clients = new WeakMap<Connection, string>();

/**
 * AES-GCM only (RFC 5647, OpenSSH's aes*-gcm@openssh.com): Node's OpenSSL runs it with AES-NI, and
 * the proxy decrypts and re-encrypts every byte on one thread. OpenSSH clients prefer
 * chacha20-poly1305, which costs this process about twice as much per byte (see bench/ssh-proxy.ts).
 */
export const PROXY_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"];

/**
 * The SSH proxy listener (DESIGN.md path 3 for `kind: ssh` targets): `ssh -p 2222 web-1@gateway`.
 * The SSH user name is the target; the user authenticates with the grant's credential (password or
 * keyboard-interactive) or a public key they registered with `key add`. Only under a live grant,
 * and only once the gateway's own connection to the target is up with the pinned host key, is the
 * login accepted; each session then ends with its grant on any replica.
 */
export class SshProxyServer {
  readonly #server: ssh2.Server;
  readonly #targets = new Map<string, TargetRuntime>();
  readonly #admission: Admission<TargetRuntime, SshProxySession>;
  readonly #connections = new Set<Connection>();
  readonly hostKeyFingerprint: string;
  #closing: Promise<void> | undefined;

  constructor(private readonly options: SshProxyOptions) {
    for (const target of options.targets) {
      if (target.kind !== "ssh") continue;
      this.#targets.set(target.name, { config: target, rules: compileShellRules(target.commands), files: compileFileRules(target.files), upstream: resolveUpstream(target) });
    }
    const hostKey = loadOrCreateHostKey(options.config.hostKeyFile);
    this.hostKeyFingerprint = hostKey.fingerprint;
    this.#server = new ssh2.Server(
      { hostKeys: [hostKey.privateKey], ident: "jitgate", algorithms: { cipher: PROXY_CIPHERS as never } },
      (client, info) => this.#accept(client, info.ip, info.header.identRaw),
    );
    this.#admission = new Admission({
      protocol: "ssh",
      broker: options.broker,
      sessions: options.sessions,
      keys: options.keys,
      events: options.events,
      redis: options.redis,
      redisPrefix: options.redisPrefix,
      loginFailures: options.loginFailures,
      targets: this.#targets,
      requestCommand: options.requestCommand,
      oidc: options.oidc,
      onError: options.onError,
      onOpened: options.onOpened,
    });
  }

  /** Admission's counters (credential work, failed logins), for tests. */
  get admission(): Admission<unknown, SshProxySession> {
    return this.#admission as Admission<unknown, SshProxySession>;
  }

  get sessions(): number {
    return this.#admission.live.size;
  }

  async listen(address: string): Promise<AddressInfo> {
    // The shell grammar loads before the first command, not while one waits.
    await loadShellGrammar();
    // ssh2's Server wraps a net.Server and forwards listen/address/close/"error" to it.
    return listenOn(this.#server as unknown as Server, address);
  }

  #accept(client: Connection, ip: string, ident: string): void {
    clients.set(client, ident);
    if (this.#closing) {
      client.end();
      return;
    }
    this.#connections.add(client);
    client.on("close", () => this.#connections.delete(client));
    client.on("error", () => {});
    let admitted = false;
    let passwordFailures = 0;
    // `over`: the connection closed or its login was refused for good. A try still waiting (on
    // the throttle's delay, a grant check) must then not go on to admit anything.
    const failures = { banner: false, over: false };
    client.on("close", () => (failures.over = true));
    const grace = setTimeout(() => {
      if (!admitted) client.end();
    }, this.options.loginGraceMs ?? 60_000);
    grace.unref();
    // Authentication requests are answered one at a time, in order (RFC 4252 §5).
    let queue = Promise.resolve();
    client.on("authentication", (ctx) => {
      queue = queue.then(async () => {
        if (admitted || failures.over) return ctx.reject();
        try {
          const outcome = await this.#authenticate(client, ctx, ip, failures);
          if (outcome === "rejected") {
            if (ctx.method === "password" || ctx.method === "keyboard-interactive") passwordFailures += 1;
            if (passwordFailures >= MAX_PASSWORD_ATTEMPTS) {
              failures.over = true;
              ctx.reject([]);
              client.end();
            }
            return;
          }
          admitted = true;
          clearTimeout(grace);
        } catch (error) {
          const refusal = this.#admission.refusalFor(error);
          if (refusal.code === "internal") this.options.onError?.(error, "ssh login");
          failures.over = true;
          sendUserauthBanner(client, bannerText(refusal));
          ctx.reject([]);
          // No method is left: say goodbye after the failure reaches the client.
          setTimeout(() => client.end(), 100).unref();
        }
      });
    });
  }

  /**
   * Answers one authentication request: "rejected" (the client may try another method or key),
   * "admitted" (accepted, session running), or throws a refusal that ends the login.
   *
   * Nothing here tells a guesser which targets exist or who holds a grant (issue 17): an unknown
   * target (the SSH user name) goes through the same steps as a known one and fails like a wrong
   * credential; a public key offered without a signature is always answered "it may do" (RFC 4252
   * §7, SSH_MSG_USERAUTH_PK_OK), so only the holder of the private key learns whether it opens a
   * grant.
   */
  async #authenticate(client: Connection, ctx: AuthContext, ip: string, failures: LoginState): Promise<"rejected" | "admitted"> {
    const admission = this.#admission;
    const runtime = admission.knownTarget(ctx.username);
    const name = ctx.username;
    switch (ctx.method) {
      case "publickey": {
        if (!ctx.signature) {
          ctx.accept();
          return "rejected";
        }
        const key = ssh2.utils.parseKey(ctx.key.data);
        const parsed = Array.isArray(key) ? key[0] : key;
        if (!parsed || parsed instanceof Error || !ctx.blob || !parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo)) {
          ctx.reject();
          return "rejected";
        }
        // The client holds the private key: now its grant is looked up, on an unknown target too
        // (the same work; no grant). An unknown key is rejected like a wrong password (one banner
        // per connection: a client with many keys tries each in turn). Key failures are not
        // counted as guesses: a signature cannot be guessed.
        const grant = await admission.grantOfKey(name, ctx.key.data);
        if (!grant || !runtime) {
          this.#refuseTry(client, ctx, admission.badCredential(name), failures);
          return "rejected";
        }
        if (failures.over) {
          ctx.reject([]);
          return "rejected";
        }
        await this.#admit(client, ctx, runtime, grant, ip);
        return "admitted";
      }
      case "password":
        return this.#withSecret(client, ctx, runtime, name, ctx.password, ip, failures);
      case "keyboard-interactive": {
        const answers = await new Promise<string[] | undefined>((resolve) =>
          ctx.prompt([{ prompt: `Password (jitgate grant credential for ${name}): `, echo: false }], (responses) =>
            resolve(Array.isArray(responses) ? responses : undefined),
          ),
        );
        if (!answers?.[0]) {
          ctx.reject();
          return "rejected";
        }
        return this.#withSecret(client, ctx, runtime, name, answers[0], ip, failures);
      }
      default:
        ctx.reject(LOGIN_METHODS);
        return "rejected";
    }
  }

  /** Rejects one try with the refusal's banner, sent once per connection. */
  #refuseTry(client: Connection, ctx: AuthContext, refusal: AdmissionRefused, failures: LoginState): void {
    if (!failures.banner) {
      failures.banner = true;
      sendUserauthBanner(client, bannerText(refusal.refusal));
    }
    ctx.reject(LOGIN_METHODS);
  }

  /**
   * A password: the grant's credential, or (shaped like a JWT) an OIDC ID token. One that does not
   * check out is rejected after the same work whatever was wrong (one keyed hash, one query), and
   * counted against the address; the client may try again, up to MAX_PASSWORD_ATTEMPTS.
   */
  async #withSecret(
    client: Connection,
    ctx: AuthContext,
    runtime: TargetRuntime | undefined,
    name: string,
    secret: string,
    ip: string,
    failures: LoginState,
  ): Promise<"rejected" | "admitted"> {
    const admission = this.#admission;
    await admission.beforeTry(ip);
    if (failures.over) {
      ctx.reject([]);
      return "rejected";
    }
    let grant: Grant;
    try {
      grant = looksLikeJwt(secret) ? await admission.grantOfIdToken(name, secret) : await admission.grantOfSecret(name, secret);
      if (!runtime) throw admission.badCredential(name);
    } catch (error) {
      const refusal = admission.refusalFor(error);
      if (refusal.code !== "bad_credential") throw error;
      await admission.failed(ip, name, ctx.method);
      this.#refuseTry(client, ctx, error as AdmissionRefused, failures);
      return "rejected";
    }
    // The client went, or its login ended, while the credential was checked: nothing to admit.
    if (failures.over) {
      ctx.reject([]);
      return "rejected";
    }
    await this.#admit(client, ctx, runtime, grant, ip);
    return "admitted";
  }

  /**
   * Connects to the target (pinned host key), admits the session under its grant, then accepts the
   * login. Any failure is a refusal the user can read.
   */
  async #admit(client: Connection, ctx: AuthContext, runtime: TargetRuntime, grant: Grant, ip: string): Promise<void> {
    const { sessions, broker } = this.options;
    const target = runtime.config;
    let upstream: Client;
    try {
      upstream = await connectUpstream(runtime.upstream, { forwardAgentOf: target.allowAgentForwarding ? client : undefined });
    } catch (error) {
      if (error instanceof HostKeyMismatch) {
        await sessions
          .audit({
            kind: "ssh.host_key_mismatch",
            actorId: grant.personId,
            target: target.name,
            requestId: grant.requestId,
            grantId: grant.id,
            data: { expected: error.expected, presented: error.presented, upstream: `${runtime.upstream.host}:${runtime.upstream.port}` },
          })
          .catch((auditError: unknown) => this.options.onError?.(auditError, "audit host key mismatch"));
        throw new AdmissionRefused({
          code: "target_unreachable",
          message: `the host key of ${target.name} does not match the key pinned in jitgate's configuration (presented ${error.presented}); the session is refused and the mismatch is recorded`,
        });
      }
      throw new AdmissionRefused({ code: "target_unreachable", message: `jitgate could not reach ${target.name}: ${(error as Error).message}` });
    }
    let admitted;
    try {
      admitted = await this.#admission.open(grant, ip);
    } catch (error) {
      upstream.end();
      throw error;
    }
    const { session: row, snapshot } = admitted;
    const self = this;
    const approvedPaths = new Set<string>();
    const hooks: SshSessionHooks = {
      allowPortForwarding: target.allowPortForwarding,
      allowAgentForwarding: target.allowAgentForwarding,
      hasRules: hasShellRules(runtime.rules),
      shell: runtime.rules.shell,
      client: `${clients.get(client) ?? "an unknown client"} from ${ip}`,
      classify: (command, options) => classifyCommand(command, runtime.rules, options),
      onBlocked: (command) => sessions.blocked(snapshot, command.text, command.rule ?? "block"),
      onHold: (command, onHeld) => holdForDecision(self.options, snapshot, command.text, command.rule ?? "review", onHeld),
      onFileOperation: (operation) => {
        sessions
          .audit({
            kind: "ssh.file",
            actorId: snapshot.personId,
            target: snapshot.target,
            requestId: snapshot.requestId,
            grantId: snapshot.grantId,
            sessionId: snapshot.id,
            data: { ...operation },
          })
          .catch((error: unknown) => self.options.onError?.(error, "audit sftp operation"));
      },
      onShellStarted: (text) => {
        sessions.shellStarted(snapshot, text).catch((error: unknown) => self.options.onError?.(error, "record shell start"));
      },
      onFileChange: async (change) => {
        const paths = [change.path, ...(change.to !== undefined ? [change.to] : []), ...(change.from !== undefined ? [change.from] : [])];
        const matched = matchFileRule(runtime.files, paths);
        // An approval covers the paths it named for the rest of the session (scp's write is an
        // open, writes and a setstat of the size).
        const approvedEarlier = matched?.verdict === "review" && paths.every((path) => approvedPaths.has(path));
        // Recorded before the request is forwarded; if it cannot be recorded, it is not forwarded.
        await sessions.audit({
          kind: "ssh.file.request",
          actorId: snapshot.personId,
          target: snapshot.target,
          requestId: snapshot.requestId,
          grantId: snapshot.grantId,
          sessionId: snapshot.id,
          data: { ...change, verdict: matched?.verdict ?? "allow", ...(matched ? { rule: matched.rule } : {}), ...(approvedEarlier ? { approvedEarlier } : {}) },
        });
        if (!matched || approvedEarlier) return { allowed: true };
        const text = `sftp ${change.op} ${paths.join(" → ")}`;
        if (matched.verdict === "block") {
          await sessions.blocked(snapshot, text, matched.rule).catch((error: unknown) => self.options.onError?.(error, "record blocked sftp request"));
          return { allowed: false, why: `blocked by rule "${matched.rule}"` };
        }
        const verdict = await holdForDecision(self.options, snapshot, text, matched.rule);
        if (verdict === "approved") for (const path of paths) approvedPaths.add(path);
        return verdict === "approved" ? { allowed: true } : { allowed: false, why: `${verdict === "denied" ? "denied" : "no decision"} in the request thread (rule "${matched.rule}")` };
      },
      onClose: async (summary, recordings) => {
        await sessions.storeRecordings(row.id, recordings).catch((error: unknown) => self.options.onError?.(error, "store ssh recordings"));
        await admitted.close(
          {
            ...sshCounts(summary),
            durationMs: summary.endedAt.getTime() - summary.startedAt.getTime(),
            recordingId: row.id,
          },
          { format: "asciicast-v2", channels: recordings.map((r) => ({ channel: r.channel, kind: r.kind, title: r.title, truncated: r.truncated })) },
        );
      },
    };
    ctx.accept();
    const session = new SshProxySession(client, upstream, hooks, { onError: (error) => this.options.onError?.(error, "ssh proxy session") });
    this.#admission.live.track(session);
    admitted.attach((reason) => session.terminate(reason));
  }

  /**
   * Stops accepting, lets sessions finish for `graceMs`, then ends the rest with a notice. Safe to
   * call twice.
   */
  close(graceMs = 5_000): Promise<void> {
    this.#closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.#server.close(() => resolve()));
      for (const client of this.#connections) {
        // Connections still logging in have no session to drain.
        if (![...this.#admission.live].some((s) => s.owns(client))) client.end();
      }
      await this.#admission.live.drain(graceMs);
      await stopped;
    })();
    return this.#closing;
  }
}

/** An SSH session's counts as a SessionSummary: commands by kind; no rows and nothing masked. */
function sshCounts({ startedAt: _started, endedAt: _ended, commandsByKind, ...counts }: SshSessionSummary) {
  return { ...counts, statementsByKind: commandsByKind, rowsReturned: 0, rowsAffected: 0, valuesMasked: 0 };
}
