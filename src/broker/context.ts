import type { Config } from "../config/schema.js";
import type { Database } from "../db/client.js";
import { systemClock, type Clock } from "./clock.js";
import { UnknownTarget } from "./errors.js";
import { TypedEvents } from "./events.js";
import { targetPolicy, type TargetPolicy } from "./policy.js";
import { noScheduler, type Scheduler } from "./scheduler.js";
import type { OnCallPort } from "./auto-approval.js";

export type BrokerConfig = Pick<Config, "targets" | "defaults" | "proxy"> & Partial<Pick<Config, "oidc" | "console" | "demo" | "http" | "slack" | "auditors" | "audit">>;

export interface BrokerOptions {
  db: Database;
  config: BrokerConfig;
  clock?: Clock;
  scheduler?: Scheduler;
  events?: TypedEvents;
  /** Who is on call now (auto-approval rules with `onCall`); absent: such rules never apply. */
  onCall?: OnCallPort | undefined;
  /** Reports failures that must not fail the operation (a job that could not be scheduled). */
  onBackgroundError?: (error: unknown, what: string) => void;
}

/**
 * What every broker service shares: the database, the clock, the event bus, the scheduler and the
 * configured policies. Only broker services hold it; everything outside `broker/` gets methods.
 */
export class BrokerContext {
  readonly db: Database;
  readonly config: BrokerConfig;
  readonly clock: Clock;
  readonly scheduler: Scheduler;
  readonly events: TypedEvents;
  readonly onCall: OnCallPort | undefined;
  readonly onBackgroundError: (error: unknown, what: string) => void;
  readonly #policies: Map<string, TargetPolicy>;

  constructor(options: BrokerOptions) {
    this.db = options.db;
    this.config = options.config;
    this.clock = options.clock ?? systemClock;
    this.scheduler = options.scheduler ?? noScheduler;
    this.onCall = options.onCall;
    this.onBackgroundError = options.onBackgroundError ?? (() => {});
    this.events = options.events ?? new TypedEvents((error, name) => this.onBackgroundError(error, `listener of ${name}`));
    this.#policies = new Map(options.config.targets.map((t) => [t.name, targetPolicy(t, options.config.defaults)]));
  }

  policy(target: string): TargetPolicy {
    const policy = this.#policies.get(target);
    if (!policy) throw new UnknownTarget(target, [...this.#policies.keys()]);
    return policy;
  }

  policies(): TargetPolicy[] {
    return [...this.#policies.values()];
  }

  /** Runs what must not fail the operation that already committed (scheduling a job). */
  async background(what: string, run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (error) {
      this.onBackgroundError(error, what);
    }
  }
}
