import type { TypedEvents } from "../broker/events.js";

/** Why the gateway ends a live session. */
export type EndReason = "expired" | "revoked" | "shutdown";

/** What a protocol engine's session offers the registry: ending it, and telling when it is gone. */
export interface LiveSession {
  terminate(reason: EndReason): void;
  readonly closed: Promise<void>;
}

/** What admission binds under a grant: it ends with the grant and moves with its extension. */
export interface GrantBinding {
  terminate(reason: "expired" | "revoked"): void;
  extendTo(at: Date): void;
}

/**
 * The sessions one proxy holds, by grant: a grant that expires, is revoked or is extended on any
 * replica reaches its sessions here; shutdown drains them. Shared by the PostgreSQL and SSH proxies.
 * Protocol sessions are tracked from the moment they exist (shutdown ends them); admission binds
 * each admitted session under its grant.
 */
export class LiveSessions<T extends LiveSession> {
  readonly #all = new Set<T>();
  readonly #byGrant = new Map<string, Set<GrantBinding>>();
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

  /** Puts an admitted session under its grant; the returned function takes it out again. */
  bind(grantId: string, binding: GrantBinding): () => void {
    const set = this.#byGrant.get(grantId) ?? new Set<GrantBinding>();
    set.add(binding);
    this.#byGrant.set(grantId, set);
    return () => {
      set.delete(binding);
      if (set.size === 0 && this.#byGrant.get(grantId) === set) this.#byGrant.delete(grantId);
    };
  }

  #each(grantId: string, act: (binding: GrantBinding) => void): void {
    for (const binding of this.#byGrant.get(grantId) ?? []) act(binding);
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
