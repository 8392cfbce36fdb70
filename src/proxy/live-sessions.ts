import type { TypedEvents } from "../broker/events.js";

/** What a proxy session offers the registry: ending with its grant, and telling when it is gone. */
export interface LiveSession {
  terminate(reason: "expired" | "revoked" | "shutdown"): void;
  extendTo(at: Date): void;
  readonly closed: Promise<void>;
}

/**
 * The sessions one proxy holds, by grant: a grant that expires, is revoked or is extended on any
 * replica reaches its sessions here; shutdown drains them. Shared by the PostgreSQL and SSH proxies.
 */
export class LiveSessions<T extends LiveSession> {
  readonly #all = new Set<T>();
  readonly #byGrant = new Map<string, Set<T>>();
  readonly #detach: (() => void)[];

  constructor(events: TypedEvents) {
    this.#detach = [
      events.on("grant.expired", ({ grant }) => this.#each(grant.id, (s) => s.terminate("expired"))),
      events.on("grant.revoked", ({ grant }) => this.#each(grant.id, (s) => s.terminate("revoked"))),
      events.on("grant.extended", ({ grant }) => this.#each(grant.id, (s) => s.extendTo(new Date(grant.expiresAt)))),
    ];
  }

  get size(): number {
    return this.#all.size;
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.#all.values();
  }

  /** Tracks a session until it closes (before it is admitted under a grant). */
  track(session: T): void {
    this.#all.add(session);
    void session.closed.then(() => this.#all.delete(session));
  }

  /** Puts a tracked session under its grant; the returned function takes it out again. */
  bind(grantId: string, session: T): () => void {
    const set = this.#byGrant.get(grantId) ?? new Set<T>();
    set.add(session);
    this.#byGrant.set(grantId, set);
    return () => {
      set.delete(session);
      if (set.size === 0 && this.#byGrant.get(grantId) === set) this.#byGrant.delete(grantId);
    };
  }

  #each(grantId: string, act: (session: T) => void): void {
    for (const session of this.#byGrant.get(grantId) ?? []) act(session);
  }

  /** Stops following grant events, lets sessions end for `graceMs`, then ends the rest. */
  async drain(graceMs: number): Promise<void> {
    for (const detach of this.#detach.splice(0)) detach();
    const deadline = Date.now() + graceMs;
    while (this.#all.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    for (const session of this.#all) session.terminate("shutdown");
    await Promise.all([...this.#all].map((session) => session.closed));
  }
}
