import { isIPv6 } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import type { AuditInput } from "../broker/audit.js";

export interface LoginThrottleOptions {
  redis: Redis;
  /** The deployment's Redis prefix: every replica counts into the same keys. */
  redisPrefix: string;
  /** Failures within `windowMs` from which tries are slowed down and the burst audited. */
  threshold: number;
  windowMs: number;
  delayMs: number;
  maxDelayMs: number;
  audit(event: AuditInput): Promise<void>;
  onError?: ((error: unknown, where: string) => void) | undefined;
}

/** What the throttle did, for tests and metrics: observed through state, never by timing. */
export interface LoginThrottleStats {
  failures: number;
  /** Tries that waited before being answered, and how long the last one waited. */
  delayed: number;
  lastDelayMs: number;
  audited: number;
}

/**
 * The unit an address is counted by: an IPv4 address (IPv4-mapped IPv6 included) on its own, an
 * IPv6 address by its /64, the block one host is usually given (counting single IPv6 addresses would
 * let one host try 2^64 times as often).
 */
export function addressKey(address: string | null): string {
  if (address === null || address === "") return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head = "", tail = ""] = address.toLowerCase().split("::");
  const headParts = head === "" ? [] : head.split(":");
  const tailParts = address.includes("::") ? (tail === "" ? [] : tail.split(":")) : [];
  const groups = address.includes("::") ? [...headParts, ...Array<string>(8 - headParts.length - tailParts.length).fill("0"), ...tailParts] : headParts;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

/**
 * Slows down guessing at the proxies (issue 17): failed logins are counted per address in Redis, so
 * every replica and both proxies share the count. From `threshold` failures in a window, each try
 * from that address waits before it is answered, `delay` doubled per failure beyond the threshold
 * up to `maxDelay`. The burst is audited at the threshold and again each time its count doubles, so
 * a flood of guesses writes a few rows per address and window, not one per guess.
 */
export class LoginThrottle {
  readonly stats: LoginThrottleStats = { failures: 0, delayed: 0, lastDelayMs: 0, audited: 0 };

  constructor(private readonly options: LoginThrottleOptions) {}

  #key(address: string | null): string {
    return `${this.options.redisPrefix}:login-failures:${addressKey(address)}`;
  }

  /** How long the next try from `address` waits, from the failures counted so far. */
  delayAfter(failures: number): number {
    const { threshold, delayMs, maxDelayMs } = this.options;
    if (failures < threshold) return 0;
    return Math.min(maxDelayMs, delayMs * 2 ** Math.min(failures - threshold, 30));
  }

  /** Failures counted for `address` in the current window. */
  async failures(address: string | null): Promise<number> {
    return Number((await this.options.redis.get(this.#key(address))) ?? 0);
  }

  /**
   * Waits as long as the address's failures say before a try is checked. Throws when Redis cannot
   * be read: then the gateway cannot slow a guesser down, and refuses (fail closed).
   */
  async beforeTry(address: string | null): Promise<void> {
    const wait = this.delayAfter(await this.failures(address));
    if (wait === 0) return;
    this.stats.delayed += 1;
    this.stats.lastDelayMs = wait;
    await sleep(wait);
  }

  /** Counts a failed try; audits the burst at the threshold and at each doubling after it. */
  async failed(address: string | null, detail: { protocol: "postgres" | "ssh"; target: string; method: string }): Promise<void> {
    this.stats.failures += 1;
    const key = this.#key(address);
    const { redis, threshold, windowMs } = this.options;
    try {
      // The window starts at the first failure (NX: later failures do not extend it).
      const replies = (await redis.multi().incr(key).pexpire(key, windowMs, "NX").exec()) ?? [];
      for (const [error] of replies) if (error) throw error;
      const failures = Number(replies[0]?.[1] ?? 0);
      if (failures < threshold || !Number.isInteger(Math.log2(failures / threshold))) return;
      this.stats.audited += 1;
      await this.options.audit({
        kind: "proxy.login_failures",
        target: detail.target,
        data: {
          address: addressKey(address),
          protocol: detail.protocol,
          method: detail.method,
          failures,
          windowSeconds: Math.round(windowMs / 1000),
          nextDelayMs: this.delayAfter(failures),
        },
      });
    } catch (error) {
      // The refusal stands whatever happens here; the next try's read fails closed if Redis is gone.
      this.options.onError?.(error, "count a failed login");
    }
  }
}
