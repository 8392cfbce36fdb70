import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { listenOn } from "../listen.js";
import { clearCookieHeader } from "./cookies.js";
import { BadRequestInput, checkRequestInput } from "./request-input.js";

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * The gateway's one HTTP listener: health, readiness and metrics here; chat adapters mount their
 * receivers (`/slack/events`, `/api/messages`) on it with `route`.
 */
export class HttpServer {
  readonly #routes = new Map<string, Handler>();
  readonly #prefixes: { method: string; prefix: string; handler: Handler }[] = [];
  readonly #server: Server;
  #closing: Promise<void> | undefined;

  constructor(private readonly onError: (error: unknown, path: string) => void = () => {}) {
    this.#server = createServer((req, res) => this.#dispatch(req, res));
    this.#server.keepAliveTimeout = 5_000;
  }

  route(method: string, path: string, handler: Handler): void {
    this.#routes.set(`${method.toUpperCase()} ${path}`, handler);
  }

  /** Every path under `prefix` (which ends with `/`): pages with ids in the path, static assets. Exact routes win. */
  routePrefix(method: string, prefix: string, handler: Handler): void {
    if (!prefix.endsWith("/")) throw new Error(`a route prefix ends with "/": ${prefix}`);
    this.#prefixes.push({ method: method.toUpperCase(), prefix, handler });
    // Longest prefix first, so /audit/sessions/ wins over /audit/.
    this.#prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** Every registered route as `METHOD /path` (a prefix route ends with `/`): what the edge tests walk. */
  routes(): string[] {
    return [...this.#routes.keys(), ...this.#prefixes.map((p) => `${p.method} ${p.prefix}`)];
  }

  #prefixHandler(method: string | undefined, path: string): Handler | undefined {
    return this.#prefixes.find((p) => p.method === method && path.startsWith(p.prefix))?.handler;
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let path: string;
    try {
      path = checkRequestInput(req).pathname;
    } catch (error) {
      if (!(error instanceof BadRequestInput)) throw error;
      sendBadRequest(res, error);
      return;
    }
    const handler = this.#routes.get(`${req.method} ${path}`) ?? this.#prefixHandler(req.method, path);
    if (!handler) {
      const allowed = [...this.#routes.keys()].filter((key) => key.endsWith(` ${path}`));
      sendJson(res, allowed.length > 0 ? 405 : 404, { error: allowed.length > 0 ? "method not allowed" : "not found" });
      return;
    }
    try {
      await handler(req, res);
    } catch (error) {
      this.onError(error, path);
      if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      else res.end();
    }
  }

  listen(address: string): Promise<AddressInfo> {
    return listenOn(this.#server, address);
  }

  /** Stops accepting, lets requests in flight finish, then resolves. Safe to call twice. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      if (!this.#server.listening) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeIdleConnections();
    });
    return this.#closing;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** A plain-text 400 that says what was wrong, clearing the malformed cookies of ours it names. */
export function sendBadRequest(res: ServerResponse, error: BadRequestInput): void {
  const text = `Bad request: ${error.message}.\n`;
  for (const name of error.clearCookies) res.appendHeader("set-cookie", clearCookieHeader(name));
  res.writeHead(400, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(text), "cache-control": "no-store" });
  res.end(text);
}
