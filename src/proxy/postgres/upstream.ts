import { isIP, connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { serialize } from "pg-protocol";
import { BackendReader, BackendType, decodeErrorFields } from "./backend-codec.js";
import { md5Password, ScramClient } from "./scram.js";

export interface UpstreamTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** `require` and stronger use TLS; `verify-full` also checks the certificate and host name. */
  sslmode: "disable" | "prefer" | "require" | "verify-ca" | "verify-full";
}

export function parseUpstreamUrl(url: string): UpstreamTarget {
  const parsed = new URL(url);
  const sslmode = (parsed.searchParams.get("sslmode") ?? "disable") as UpstreamTarget["sslmode"];
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ""),
    port: parsed.port ? Number(parsed.port) : 5432,
    user: decodeURIComponent(parsed.username),
    password: decodeURIComponent(parsed.password),
    database: decodeURIComponent(parsed.pathname.replace(/^\//, "")) || decodeURIComponent(parsed.username),
    sslmode,
  };
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly sqlState = "08006",
  ) {
    super(message);
  }
}

export interface UpstreamSession {
  socket: Socket | TLSSocket;
  /** ParameterStatus frames, to pass on to the client as they are. */
  parameterFrames: Buffer[];
  processId: number;
  secretKey: number;
  /** Bytes received after ReadyForQuery (none, normally). */
  rest: Buffer[];
}

function connectSocket(target: UpstreamTarget, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamError(`upstream ${target.host}:${target.port} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(new UpstreamError(`upstream ${target.host}:${target.port}: ${error.message}`));
    });
  });
}

async function startTls(socket: Socket, target: UpstreamTarget): Promise<TLSSocket> {
  socket.write(serialize.requestSsl());
  const answer = await new Promise<Buffer>((resolve, reject) => {
    socket.once("data", resolve);
    socket.once("error", reject);
  });
  if (answer[0] !== 0x53 /* S */) {
    socket.destroy();
    throw new UpstreamError(`upstream ${target.host} does not accept TLS, and the target URL requires it`);
  }
  const verify = target.sslmode === "verify-full" || target.sslmode === "verify-ca";
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({
      socket,
      // SNI takes host names only (RFC 6066 §3).
      ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
      rejectUnauthorized: verify,
      ...(target.sslmode === "verify-ca" ? { checkServerIdentity: () => undefined } : {}),
    });
    tls.once("secureConnect", () => resolve(tls));
    tls.once("error", (error) => reject(new UpstreamError(`upstream TLS: ${error.message}`)));
  });
}

/**
 * Opens an authenticated session on the upstream server with the gateway's own credentials
 * (trust, cleartext, md5 or SCRAM-SHA-256), and waits for its first ReadyForQuery.
 */
export async function openUpstream(
  target: UpstreamTarget,
  clientParams: Record<string, string>,
  timeoutMs = 10_000,
): Promise<UpstreamSession> {
  let socket: Socket | TLSSocket = await connectSocket(target, timeoutMs);
  try {
    if (target.sslmode !== "disable" && target.sslmode !== "prefer") socket = await startTls(socket, target);
    const params: Record<string, string> = { ...clientParams, user: target.user, database: target.database };
    socket.write(serialize.startup(params));
    return await new Promise<UpstreamSession>((resolve, reject) => {
      const reader = new BackendReader(64 * 1024 * 1024);
      const parameterFrames: Buffer[] = [];
      let processId = 0;
      let secretKey = 0;
      let scram: ScramClient | undefined;
      const timer = setTimeout(() => fail(new UpstreamError("upstream authentication timed out")), timeoutMs);
      const fail = (error: Error) => {
        clearTimeout(timer);
        socket.off("data", onData);
        socket.destroy();
        reject(error);
      };
      const onData = (chunk: Buffer) => {
        try {
          reader.push(chunk, (type, frame) => {
            if (type === BackendType.Authentication) {
              const code = frame.readInt32BE(5);
              if (code === 0) return; // AuthenticationOk
              if (code === 3) socket.write(serialize.password(target.password));
              else if (code === 5) socket.write(serialize.password(md5Password(target.user, target.password, frame.subarray(9, 13))));
              else if (code === 10) {
                const mechanisms = frame.toString("utf8", 9).split("\0");
                if (!mechanisms.includes("SCRAM-SHA-256")) throw new UpstreamError(`upstream offers no supported SASL mechanism (${mechanisms.join(", ")})`);
                scram = new ScramClient(target.password);
                socket.write(serialize.sendSASLInitialResponseMessage("SCRAM-SHA-256", scram.first()));
              } else if (code === 11) socket.write(serialize.sendSCRAMClientFinalMessage(scram!.final(frame.toString("utf8", 9))));
              else if (code === 12) scram!.verify(frame.toString("utf8", 9));
              else throw new UpstreamError(`upstream asks for an unsupported authentication method (${code})`);
            } else if (type === BackendType.ParameterStatus) parameterFrames.push(Buffer.from(frame));
            else if (type === BackendType.BackendKeyData) {
              processId = frame.readInt32BE(5);
              secretKey = frame.readInt32BE(9);
            } else if (type === BackendType.ErrorResponse) {
              const fields = decodeErrorFields(frame);
              throw new UpstreamError(`upstream refused the session: ${fields.M ?? "unknown error"}`, fields.C ?? "08006");
            } else if (type === BackendType.ReadyForQuery) {
              clearTimeout(timer);
              socket.off("data", onData);
              resolve({ socket, parameterFrames, processId, secretKey, rest: [] });
            }
          });
        } catch (error) {
          fail(error instanceof Error ? error : new Error(String(error)));
        }
      };
      socket.on("data", onData);
      socket.once("close", () => fail(new UpstreamError("upstream closed the connection during start-up")));
    });
  } catch (error) {
    socket.destroy();
    throw error;
  }
}

/** Sends a CancelRequest for an upstream backend (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS). */
export async function cancelUpstream(target: Pick<UpstreamTarget, "host" | "port">, processId: number, secretKey: number): Promise<void> {
  const socket = await connectSocket({ ...target, user: "", password: "", database: "", sslmode: "disable" }, 5_000);
  await new Promise<void>((resolve) => {
    socket.end(serialize.cancel(processId, secretKey), () => resolve());
  });
  socket.destroy();
}
