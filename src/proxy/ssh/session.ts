import type { Duplex } from "node:stream";
import { SHELL_CHECKS, type SessionSummary } from "../../broker/index.js";
import type { Client, ClientChannel, Connection, PseudoTtyInfo, ServerChannel, Session } from "ssh2";
import type { HeldVerdict } from "../held-decision.js";
import type { EndReason } from "../live-sessions.js";
import { AsciicastRecorder } from "../recording/asciicast.js";
import { SHELL_RULE, type ClassifiedCommand, type ShellVerdict } from "../../rules/shell-classifier.js";
import { INTERRUPT, LineDiscipline, type LineEvent } from "./line-discipline.js";
import { SftpAudit, type SftpOperation } from "./sftp-audit.js";
import { fileChangeOf, requestId, requestScanner, SSH_FX_PERMISSION_DENIED, statusReply, type FileChange } from "./sftp-gate.js";
import { SftpProtocolError, type SftpPiece } from "./sftp-packets.js";

/** A channel's terminal recording, handed over when the session closes. */
export interface ChannelRecording {
  channel: number;
  kind: "shell" | "exec";
  title: string | null;
  cast: string;
  truncated: boolean;
}

export type SshSessionSummary = Pick<SessionSummary, "blocked" | "held" | "approved" | "bytesIn" | "bytesOut" | "endReason"> & {
  startedAt: Date;
  endedAt: Date;
  /** Commands that ran, by how they came: `exec`, `shell` (typed lines), `sftp` (file operations). */
  commandsByKind: Record<string, number>;
};

/** What the gateway decides about one admitted SSH session (STYLE 2: policy hangs on hooks). */
export interface SshSessionHooks {
  allowPortForwarding: boolean;
  allowAgentForwarding: boolean;
  /** Whether any command rule exists (without, typed lines are not held back at all, and shells start freely). */
  hasRules: boolean;
  /** The verdict for an interactive shell (a `shell` request) on a target with rules. */
  shell: ShellVerdict;
  /** Who connects with what, for the thread when a shell is held: `SSH-2.0-OpenSSH_9.6 from 10.0.0.7`. */
  client: string;
  /** `interactive`: a line typed into a shell (history expansion applies). */
  classify(command: string, options?: { interactive?: boolean }): Promise<ClassifiedCommand>;
  /** Records a blocked command; a rejection is reported, the command stays blocked. */
  onBlocked(command: ClassifiedCommand): Promise<void>;
  /** Holds a command for approval; `onHeld` runs once the hold is recorded. */
  onHold(command: ClassifiedCommand, onHeld: () => void): Promise<HeldVerdict>;
  onFileOperation(operation: SftpOperation): void;
  /** A shell starts on a target with rules (its lines are checked only best-effort): for the audit. */
  onShellStarted(text: string): void;
  /**
   * A request that changes the host, before it is forwarded: recorded, then allowed, refused or
   * held by the target's `files` rules. Rejects (fail closed) when it cannot be recorded.
   */
  onFileChange(change: FileChange): Promise<{ allowed: boolean; why?: string }>;
  onClose(summary: SshSessionSummary, recordings: ChannelRecording[]): Promise<void>;
}

const NOTICE = "[jitgate]";

/** Why a typed line that the shadow could not follow is refused (see LineDiscipline). */
export const UNVERIFIABLE_LINE = "unverifiable-line";

/** What the user, the thread and the summary are told about a shell that runs. */
export const BEST_EFFORT = SHELL_CHECKS;

/**
 * One user's SSH connection through the proxy, after authentication: the gateway's own connection
 * to the target, and the channels relayed between them (shells with a pty, exec, the SFTP
 * subsystem, forwarded ports when allowed). Commands are classified before they reach the target;
 * shells and exec are recorded as asciicast.
 */
export class SshProxySession {
  readonly #summary: SshSessionSummary;
  readonly #recordings: { channel: number; kind: "shell" | "exec"; title: string | null; recorder: AsciicastRecorder }[] = [];
  readonly #live = new Set<{ notify(text: string): void; close(): void }>();
  #channels = 0;
  #state: "open" | "closing" | "closed" = "open";
  #closed: Promise<void>;
  #resolveClosed!: () => void;

  constructor(
    private readonly client: Connection,
    private readonly upstream: Client,
    private readonly hooks: SshSessionHooks,
    private readonly options: { onError?: (error: unknown) => void } = {},
  ) {
    const now = new Date();
    this.#summary = { startedAt: now, endedAt: now, commandsByKind: {}, blocked: 0, held: 0, approved: 0, bytesIn: 0, bytesOut: 0, endReason: "client" };
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    client.on("session", (accept) => this.#session(accept()));
    client.on("tcpip", (accept, reject, info) => {
      if (!hooks.allowPortForwarding) return reject();
      upstream.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (error, remote) => {
        if (error) return reject();
        this.#pipe(accept(), remote);
      });
    });
    client.on("request", (accept, reject, name, info) => {
      const bind = info as { bindAddr: string; bindPort: number };
      if (!hooks.allowPortForwarding || (name !== "tcpip-forward" && name !== "cancel-tcpip-forward")) return reject?.();
      if (name === "tcpip-forward") {
        upstream.forwardIn(bind.bindAddr, bind.bindPort, (error, port) => (error ? reject?.() : accept?.(port)));
      } else {
        upstream.unforwardIn(bind.bindAddr, bind.bindPort, (error) => (error ? reject?.() : accept?.()));
      }
    });
    client.on("openssh.streamlocal", (_accept, reject) => reject());
    upstream.on("tcp connection", (info, accept, reject) => {
      if (!hooks.allowPortForwarding) return reject();
      client.forwardOut(info.destIP, info.destPort, info.srcIP, info.srcPort, (error, channel) => {
        if (error) return reject();
        this.#pipe(channel, accept());
      });
    });
    client.on("error", () => this.#end("client"));
    client.on("close", () => this.#end("client"));
    upstream.on("close", () => this.#end("upstream"));
  }

  owns(client: Connection): boolean {
    return this.client === client;
  }

  /** Resolves when both connections are closed and the session is summarized. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  // ------------------------------------------------------------------ session channels

  #session(session: Session): void {
    const number = ++this.#channels;
    let pty: PseudoTtyInfo | undefined;
    let agent = false;
    const env: Record<string, string> = {};
    let upstreamChannel: ClientChannel | undefined;
    let recorder: AsciicastRecorder | undefined;
    session.on("pty", (accept, _reject, info) => {
      pty = info;
      accept?.();
    });
    session.on("window-change", (accept, _reject, info) => {
      if (pty) Object.assign(pty, { cols: info.cols, rows: info.rows, width: info.width, height: info.height });
      upstreamChannel?.setWindow(info.rows, info.cols, info.height, info.width);
      recorder?.resize(info.cols, info.rows);
      accept?.();
    });
    session.on("env", (accept, _reject, info) => {
      // Names are bounded: LANG, LC_*, TERM-ish settings; the target's AcceptEnv decides the rest.
      if (Object.keys(env).length < 32 && /^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(info.key)) env[info.key] = info.val.slice(0, 1024);
      accept?.();
    });
    session.on("signal", (accept, _reject, info) => {
      upstreamChannel?.signal(info.name);
      accept?.();
    });
    session.on("auth-agent", (accept, reject) => {
      if (!this.hooks.allowAgentForwarding) return reject?.();
      agent = true;
      accept?.();
    });
    session.on("x11", (_accept, reject) => reject?.());
    // Every accepted channel can be told why the session ends, before or after its upstream starts.
    const register = (channel: ServerChannel) => {
      const live = {
        notify: (text: string) => this.#notice(channel, text, !!pty, recorder),
        close: () => {
          channel.exit(255);
          channel.end();
          upstreamChannel?.close();
        },
      };
      this.#live.add(live);
      channel.on("close", () => this.#live.delete(live));
    };
    session.on("shell", (accept) => {
      const channel = accept();
      recorder = this.#record(number, "shell", pty, null);
      register(channel);
      void this.#shell(channel, pty, env, agent, recorder, (stream) => (upstreamChannel = stream));
    });
    session.on("exec", (accept, _reject, info) => {
      const channel = accept();
      recorder = this.#record(number, "exec", pty, info.command);
      register(channel);
      void this.#exec(channel, info.command, pty, env, agent, recorder, (stream) => (upstreamChannel = stream));
    });
    session.on("subsystem", (accept, reject, info) => {
      if (info.name !== "sftp") return reject?.();
      const channel = accept();
      register(channel);
      this.upstream.subsys("sftp", (error, stream) => {
        if (error) return this.#refuseChannel(channel, `${NOTICE} the target refused SFTP: ${error.message}`, false);
        upstreamChannel = stream;
        this.#relaySftp(channel, stream);
      });
    });
  }

  #ptyOptions(pty: PseudoTtyInfo) {
    return { term: pty.term, cols: pty.cols, rows: pty.rows, width: pty.width, height: pty.height, modes: pty.modes };
  }

  #count(kind: string): void {
    this.#summary.commandsByKind[kind] = (this.#summary.commandsByKind[kind] ?? 0) + 1;
  }

  /** Text for the user, on the terminal (pty) or standard error, and in the recording. */
  #notice(channel: ServerChannel, text: string, pty: boolean, recorder?: AsciicastRecorder): void {
    const line = pty ? `\r\n${NOTICE} ${text}\r\n` : `${NOTICE} ${text}\n`;
    recorder?.output(Buffer.from(line));
    if (pty) channel.write(line);
    else channel.stderr.write(line);
  }

  #refuseChannel(channel: ServerChannel, text: string, pty: boolean): void {
    if (text !== "" && pty) channel.write(`${text}\r\n`);
    else if (text !== "") channel.stderr.write(`${text}\n`);
    channel.exit(1);
    channel.end();
  }

  /**
   * Lets a command or a shell start, or not: block refuses it, review holds it in the request's
   * thread until someone decides. Resolves whether it may start.
   */
  async #decide(classified: ClassifiedCommand, channel: ServerChannel, isPty: boolean, recorder: AsciicastRecorder): Promise<boolean> {
    const what = classified.reason === "shell" ? "the shell" : "the command";
    if (classified.verdict === "block") {
      this.#summary.blocked += 1;
      await this.hooks.onBlocked(classified).catch((error: unknown) => this.options.onError?.(error));
      this.#notice(
        channel,
        classified.reason === "shell" ? `interactive shells are blocked on this target: ${classified.text}` : `command blocked by rule "${classified.rule}": ${classified.text}`,
        isPty,
        recorder,
      );
      this.#refuseChannel(channel, "", false);
      return false;
    }
    if (classified.verdict === "review") {
      this.#summary.held += 1;
      const verdict = await this.hooks
        .onHold(classified, () => this.#notice(channel, `waiting for approval in the request thread (${classified.rule})`, isPty, recorder))
        .catch((error: unknown) => {
          this.options.onError?.(error);
          return "error" as const;
        });
      if (this.#state !== "open") return false;
      if (verdict !== "approved") {
        const why =
          verdict === "denied" ? "was denied in the request thread" : verdict === "timed_out" ? "got no decision in time" : "could not be held for approval";
        this.#notice(channel, `${what} ${why} (rule "${classified.rule}"); it did not run`, isPty, recorder);
        this.#refuseChannel(channel, "", false);
        return false;
      }
      this.#summary.approved += 1;
      this.#notice(channel, "approved; running", isPty, recorder);
    }
    return true;
  }

  // ------------------------------------------------------------------ exec

  async #exec(
    channel: ServerChannel,
    command: string,
    pty: PseudoTtyInfo | undefined,
    env: Record<string, string>,
    agent: boolean,
    recorder: AsciicastRecorder,
    started: (stream: ClientChannel) => void,
  ): Promise<void> {
    const isPty = !!pty;
    recorder.input(`${command}\n`);
    const classified = await this.hooks.classify(command).catch((error: unknown): ClassifiedCommand => {
      // Fail closed: a command the classifier could not look at does not run.
      this.options.onError?.(error);
      return { text: command, verdict: "block", rule: "classifier error", reason: "unverifiable" };
    });
    if (this.#state !== "open" || !(await this.#decide(classified, channel, isPty, recorder))) return;
    // An exec that starts a shell (`bash -i`, `ssh -t target bash`) gets what a shell gets.
    const startsShell = classified.startsShell === true;
    this.#count("exec");
    if (startsShell) this.#bestEffort(channel, isPty, recorder, classified.text);
    const options = { ...(pty ? { pty: this.#ptyOptions(pty) } : {}), env, ...(agent ? { agentForward: true } : {}) };
    this.upstream.exec(command, options, (error, stream) => {
      if (error) return this.#refuseChannel(channel, `${NOTICE} the target refused the command: ${error.message}`, isPty);
      started(stream);
      if (startsShell && isPty) return this.#relayShell(channel, stream, recorder, true);
      this.#track(channel, stream, recorder);
      channel.on("data", (chunk: Buffer) => {
        this.#summary.bytesIn += chunk.length;
        recorder.input(chunk);
        if (!stream.write(chunk)) {
          channel.pause();
          stream.once("drain", () => channel.resume());
        }
      });
      channel.on("end", () => stream.end());
    });
  }

  // ------------------------------------------------------------------ shell

  /** Says, once, that a shell runs whose lines are only checked best-effort. */
  #bestEffort(channel: ServerChannel, isPty: boolean, recorder: AsciicastRecorder, text: string): void {
    if (!this.hooks.hasRules) return;
    this.#count(BEST_EFFORT);
    this.hooks.onShellStarted(text);
    this.#notice(channel, `${BEST_EFFORT}: jitgate cannot know what a shell will run`, isPty, recorder);
  }

  /**
   * A `shell` request. On a target with command rules the shell is a decision of its own
   * (`commands.shell`): what it will run is typed later, and no line classifier can know it.
   */
  async #shell(
    channel: ServerChannel,
    pty: PseudoTtyInfo | undefined,
    env: Record<string, string>,
    agent: boolean,
    recorder: AsciicastRecorder,
    started: (stream: ClientChannel) => void,
  ): Promise<void> {
    const isPty = !!pty;
    if (this.hooks.hasRules) {
      const text = `interactive shell (${pty ? `pty ${pty.term}` : "no pty"}; client ${this.hooks.client})`;
      const classified: ClassifiedCommand = { text, verdict: this.hooks.shell, rule: SHELL_RULE, reason: "shell" };
      if (!(await this.#decide(classified, channel, isPty, recorder))) return;
      this.#bestEffort(channel, isPty, recorder, text);
    }
    this.upstream.shell(pty ? this.#ptyOptions(pty) : false, { env, ...(agent ? { agentForward: true } : {}) }, (error, stream) => {
      if (error) return this.#refuseChannel(channel, `${NOTICE} the target refused the shell: ${error.message}`, isPty);
      started(stream);
      this.#relayShell(channel, stream, recorder, isPty);
    });
  }

  #relayShell(channel: ServerChannel, stream: ClientChannel, recorder: AsciicastRecorder, pty: boolean): void {
    const discipline = new LineDiscipline();
    this.#track(channel, stream, recorder, (chunk) => discipline.output(chunk));
    const queue: Buffer[] = [];
    let busy = false;
    const drain = async () => {
      busy = true;
      try {
        while (queue.length > 0 && this.#state === "open") {
          const chunk = queue.shift()!;
          for (const event of discipline.push(chunk)) {
            if (event.type === "forward") stream.write(event.data);
            else await this.#typedLine(event, channel, stream, recorder, pty);
          }
        }
      } catch (error) {
        this.options.onError?.(error);
        this.#end("error");
      } finally {
        busy = false;
        if (channel.isPaused()) channel.resume();
      }
    };
    channel.on("data", (chunk: Buffer) => {
      this.#summary.bytesIn += chunk.length;
      recorder.input(discipline.hidden ? chunk.toString("latin1").replace(/[^\r\n]/g, "*") : chunk);
      queue.push(chunk);
      if (busy) {
        // A line is waiting for a decision: what was typed after it waits behind it.
        channel.pause();
        return;
      }
      void drain();
    });
    channel.on("end", () => stream.end());
  }

  async #typedLine(
    event: Extract<LineEvent, { type: "line" }>,
    channel: ServerChannel,
    stream: ClientChannel,
    recorder: AsciicastRecorder,
    pty: boolean,
  ): Promise<void> {
    const text = event.text.trim();
    // An empty line runs nothing.
    if (text === "") {
      stream.write(event.terminator);
      return;
    }
    if (event.hidden) return this.#guardedLine(text, event.terminator, channel, stream, recorder, pty, "it answered what looks like a password prompt");
    // In a full-screen program (vim, less) lines are not for the shell, but the program may be a
    // fake one: what meets a rule is still refused. An uncertain line there is let through.
    if (event.fullScreen) {
      if (!event.certain) {
        stream.write(event.terminator);
        return;
      }
      return this.#guardedLine(text, event.terminator, channel, stream, recorder, pty, "it was typed in what looks like a full-screen program");
    }
    if (!this.hooks.hasRules) {
      this.#count("shell");
      stream.write(event.terminator);
      return;
    }
    const classified: ClassifiedCommand = event.certain
      ? await this.hooks.classify(text, { interactive: true }).catch((error: unknown): ClassifiedCommand => {
          this.options.onError?.(error);
          return { text, verdict: "block", rule: UNVERIFIABLE_LINE };
        })
      : { text, verdict: "block", rule: UNVERIFIABLE_LINE };
    if (classified.verdict === "allow") {
      this.#count("shell");
      stream.write(event.terminator);
      return;
    }
    if (classified.verdict === "block") {
      this.#summary.blocked += 1;
      stream.write(INTERRUPT);
      this.#notice(
        channel,
        classified.rule === UNVERIFIABLE_LINE
          ? "line not run: it was edited with history or completion keys that jitgate cannot follow; type the command out in full"
          : `line not run: blocked by rule "${classified.rule}"`,
        pty,
        recorder,
      );
      await this.hooks.onBlocked(classified).catch((error: unknown) => this.options.onError?.(error));
      return;
    }
    this.#summary.held += 1;
    const verdict = await this.hooks
      .onHold(classified, () => this.#notice(channel, "waiting for approval in the request thread", pty, recorder))
      .catch((error: unknown) => {
        this.options.onError?.(error);
        return "error" as const;
      });
    if (this.#state !== "open") return;
    if (verdict === "approved") {
      this.#summary.approved += 1;
      this.#count("shell");
      stream.write(event.terminator);
      return;
    }
    stream.write(INTERRUPT);
    const why = verdict === "denied" ? "was denied in the request thread" : verdict === "timed_out" ? "got no decision in time" : "could not be held for approval";
    this.#notice(channel, `line not run: it ${why} (rule "${classified.rule}")`, pty, recorder);
  }

  /**
   * A line that may not be a shell command: the answer to what looks like a password prompt with
   * nothing echoed (a password, not to be shown in a thread nor held — or a line pasted after a
   * fake prompt, which is not echoed before Enter either), or a line typed in what looks like a
   * full-screen program (vim — or a shell that printed the alternate-screen bytes). A line that
   * meets a block or review rule is refused; the rest goes through.
   */
  async #guardedLine(
    text: string,
    terminator: Buffer,
    channel: ServerChannel,
    stream: ClientChannel,
    recorder: AsciicastRecorder,
    pty: boolean,
    why: string,
  ): Promise<void> {
    if (!this.hooks.hasRules) {
      stream.write(terminator);
      return;
    }
    const classified = await this.hooks.classify(text, { interactive: true }).catch((): ClassifiedCommand => ({ text, verdict: "allow" }));
    if (classified.verdict === "allow" || classified.reason !== "rule") {
      stream.write(terminator);
      return;
    }
    this.#summary.blocked += 1;
    stream.write(INTERRUPT);
    this.#notice(channel, `line not run: ${why} and meets rule "${classified.rule}"`, pty, recorder);
    const recorded = why.includes("password") ? "(input at a password prompt)" : text;
    await this.hooks.onBlocked({ text: recorded, verdict: "block", rule: classified.rule, reason: "rule" }).catch((error: unknown) => this.options.onError?.(error));
  }

  // ------------------------------------------------------------------ output, exit, sftp

  /** Relays output and the exit status of a shell or exec channel, recording it. */
  #track(channel: ServerChannel, stream: ClientChannel, recorder: AsciicastRecorder, onOutput?: (chunk: Buffer) => void): void {
    const out = (target: NodeJS.WritableStream) => (chunk: Buffer) => {
      this.#summary.bytesOut += chunk.length;
      recorder.output(chunk);
      onOutput?.(chunk);
      if (!target.write(chunk)) {
        stream.pause();
        target.once("drain", () => stream.resume());
      }
    };
    stream.on("data", out(channel));
    stream.stderr.on("data", out(channel.stderr));
    stream.on("exit", (code: number | null, signal?: string, dump?: boolean, description?: string) => {
      if (code !== null && code !== undefined) channel.exit(code);
      else if (signal) channel.exit(signal.replace(/^SIG/, ""), !!dump, description ?? "");
    });
    stream.on("close", () => channel.end());
    channel.on("close", () => stream.close());
  }

  #relaySftp(channel: ServerChannel, stream: ClientChannel): void {
    this.#count("sftp-session");
    const audit = new SftpAudit((operation) => {
      this.#count("sftp");
      this.hooks.onFileOperation(operation);
    });
    const guard = (observe: () => void) => {
      try {
        observe();
      } catch (error) {
        if (!(error instanceof SftpProtocolError)) this.options.onError?.(error);
        // Fail closed: a stream we cannot audit is not relayed further.
        channel.close();
        stream.close();
      }
    };
    // A request that may change the host is read whole, recorded (and refused or held by the
    // target's `files` rules) before it is forwarded; everything else goes on as it comes, in order.
    const scanner = requestScanner();
    const queue: SftpPiece[] = [];
    let busy = false;
    let ended = false;
    const passing: Buffer[] = [];
    let passingBytes = 0;
    const pass = (bytes: Buffer) => {
      passing.push(bytes);
      passingBytes += bytes.length;
    };
    /** Sends what passed in one write; false when the upstream channel asks us to wait. */
    const flush = (): boolean => {
      if (passing.length === 0) return true;
      const whole = passing.length === 1 ? passing[0]! : Buffer.concat(passing, passingBytes);
      passing.length = 0;
      passingBytes = 0;
      return stream.write(whole);
    };
    const writable = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          stream.off("drain", done);
          stream.off("close", done);
          resolve();
        };
        stream.on("drain", done);
        stream.on("close", done);
      });
    const drain = async () => {
      busy = true;
      try {
        // Back-pressure: while the target's channel is full, the client's waits (see the data handler);
        // what the client sent meanwhile is queued and handled before this turn ends.
        while (this.#state === "open") {
          while (queue.length > 0 && this.#state === "open") {
            const piece = queue.shift()!;
            if (piece.kind === "tail") {
              pass(piece.bytes);
              continue;
            }
            const change = piece.whole ? fileChangeOf(piece.head, (handle) => audit.pathOf(handle)) : undefined;
            if (!change) {
              audit.request(piece.type, piece.head);
              pass(piece.head);
              continue;
            }
            if (!flush()) await writable();
            const verdict = await this.hooks.onFileChange(change).catch((error: unknown) => {
              // Fail closed, and say why in the log: the request is refused when it cannot be recorded.
              this.options.onError?.(error);
              return { allowed: false, why: "could not be recorded" };
            });
            if (this.#state !== "open") break;
            if (verdict.allowed) {
              audit.request(piece.type, piece.head);
              pass(piece.head);
            } else {
              channel.write(statusReply(requestId(piece.head), SSH_FX_PERMISSION_DENIED, `jitgate: ${verdict.why ?? "refused"}`));
            }
          }
          if (this.#state !== "open" || flush()) break;
          await writable();
        }
      } catch (error) {
        if (!(error instanceof SftpProtocolError)) this.options.onError?.(error);
        channel.close();
        stream.close();
      } finally {
        busy = false;
        // The client's EOF goes upstream after the requests before it.
        if (ended) stream.end();
        else if (channel.isPaused()) channel.resume();
      }
    };
    channel.on("data", (chunk: Buffer) => {
      this.#summary.bytesIn += chunk.length;
      guard(() => queue.push(...scanner.push(chunk)));
      if (busy) {
        channel.pause();
        return;
      }
      void drain();
    });
    stream.on("data", (chunk: Buffer) => {
      this.#summary.bytesOut += chunk.length;
      guard(() => audit.fromServer(chunk));
    });
    channel.on("end", () => {
      ended = true;
      if (!busy) stream.end();
    });
    // The client's channel ends when the target's closes, not at its EOF: the target's exit status
    // may come after its EOF, and an OpenSSH client whose channel closes before the exit status
    // exits 255 (scp then exits 1 after a complete transfer).
    stream.pipe(channel, { end: false });
    stream.on("exit", (code: number | null) => {
      if (typeof code === "number") channel.exit(code);
    });
    stream.on("close", () => {
      audit.end();
      channel.end();
    });
    channel.on("close", () => stream.close());
  }

  #pipe(a: Duplex, b: Duplex): void {
    this.#count("forward");
    a.on("data", (chunk: Buffer) => (this.#summary.bytesIn += chunk.length));
    b.on("data", (chunk: Buffer) => (this.#summary.bytesOut += chunk.length));
    a.pipe(b).on("error", () => a.destroy());
    b.pipe(a).on("error", () => b.destroy());
    const live = { notify: () => {}, close: () => (a.destroy(), b.destroy()) };
    this.#live.add(live);
    a.on("close", () => this.#live.delete(live));
  }

  #record(channel: number, kind: "shell" | "exec", pty: PseudoTtyInfo | undefined, command: string | null): AsciicastRecorder {
    const recorder = new AsciicastRecorder({ width: pty?.cols ?? 80, height: pty?.rows ?? 24, term: pty?.term, title: command ?? kind });
    this.#recordings.push({ channel, kind, title: command ?? pty?.term ?? null, recorder });
    return recorder;
  }

  // ------------------------------------------------------------------ ending

  /** Ends the session because its grant ended (or the gateway stops), telling the user why. */
  terminate(reason: EndReason): void {
    if (this.#state !== "open") return;
    const text = reason === "expired" ? "access grant expired" : reason === "revoked" ? "access grant revoked" : "jitgate is shutting down";
    for (const live of this.#live) {
      live.notify(text);
      live.close();
    }
    this.#end(reason);
  }

  #end(reason: string): void {
    if (this.#state !== "open") return;
    this.#state = "closing";
    this.#summary.endReason = reason;
    // Channels close first (exit status, EOF, CLOSE) and the connection after: OpenSSH exits at
    // once on a DISCONNECT, before writing out what it still buffers (the notice of why).
    const deadline = Date.now() + 500;
    const disconnect = () => {
      if (this.#live.size > 0 && Date.now() < deadline) {
        setTimeout(disconnect, 10);
        return;
      }
      this.upstream.end();
      this.client.end();
    };
    setImmediate(disconnect);
    const hardStop = setTimeout(() => (this.client as unknown as { _sock?: { destroy(): void } })._sock?.destroy(), 2_000);
    hardStop.unref();
    void this.#finish();
  }

  async #finish(): Promise<void> {
    this.#summary.endedAt = new Date();
    const recordings: ChannelRecording[] = this.#recordings.map(({ recorder, ...entry }) => ({
      ...entry,
      cast: recorder.toString(),
      truncated: recorder.truncated,
    }));
    await this.hooks.onClose(this.#summary, recordings).catch((error: unknown) => this.options.onError?.(error));
    this.#state = "closed";
    this.#resolveClosed();
  }
}
