import { randomUUID } from "node:crypto";
import { once } from "node:events";
import type { Redis } from "ioredis";
import { brokerEventNames, TypedEvents, type BrokerEvent } from "../broker/events.js";
import type { JobOwnership } from "../infra/job-ownership.js";

interface Envelope {
  origin: string;
  /** The deployment of the replica that published it: deployments given one Redis prefix keep apart. */
  deployment?: string;
  event: BrokerEvent;
}

/**
 * Carries the broker's domain events to every replica over Redis pub/sub. Whatever happens on one
 * replica (a job expires a grant, an approver revokes it) reaches the proxies and chat adapters on
 * all of them, this one included: consumers listen to `events` here, never to the local broker, so
 * there is one path and no event is handled twice. Pub/sub is at-most-once; what must not be lost
 * (expiry) is also enforced by timers in the proxies and by the reconciler.
 */
export class ClusterEvents {
  readonly events: TypedEvents;
  readonly replicaId = randomUUID();
  readonly channel: string;
  #detach: (() => void) | undefined;
  #started = false;

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    prefix: string,
    private readonly onError: (error: unknown, where: string) => void = () => {},
    private readonly ownership?: JobOwnership,
  ) {
    this.channel = `${prefix}:events`;
    this.events = new TypedEvents((error, name) => onError(error, `cluster listener of ${name}`));
  }

  /** Starts relaying `local` (the broker's emitter) out, and every replica's events in. */
  async start(local: TypedEvents): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.subscriber.on("message", (channel: string, message: string) => {
      if (channel !== this.channel) return;
      let envelope: Envelope;
      try {
        envelope = JSON.parse(message) as Envelope;
      } catch (error) {
        this.onError(error, "malformed cluster event");
        return;
      }
      if (!brokerEventNames.includes(envelope.event?.name)) return;
      // Another deployment's request or grant is not in this database: rendering it would fail, or post it twice.
      if (this.ownership?.isForeign(envelope.deployment, "cluster events")) return;
      this.events.emit(envelope.event.name, envelope.event.payload as never);
    });
    // Subscribing before the connection is ready would race its own connection set-up.
    if (this.subscriber.status !== "ready") await once(this.subscriber, "ready");
    await this.subscriber.subscribe(this.channel);
    this.#detach = local.onAny((event) => this.publish(event));
  }

  /** Sends one event to every replica (a command-line run that is no replica uses it alone, without start). */
  async publish(event: BrokerEvent): Promise<void> {
    const envelope: Envelope = { origin: this.replicaId, ...(this.ownership ? { deployment: this.ownership.deploymentId } : {}), event };
    await this.publisher.publish(this.channel, JSON.stringify(envelope));
  }

  async stop(): Promise<void> {
    this.#detach?.();
    this.#detach = undefined;
    if (this.#started && this.subscriber.status === "ready") {
      await this.subscriber.unsubscribe(this.channel).catch(() => {});
    }
  }
}
