import type { ConnectionOptions } from "bullmq";
import type { Broker, DecideResult, TypedEvents } from "../broker/index.js";
import type { Database } from "../db/client.js";
import { CHAT_OUTBOX, ChatOutbox, OutboxSeal } from "./chat-outbox.js";
import type { Logger } from "../infra/logger.js";
import type { JobOwnership } from "../infra/job-ownership.js";
import { ChatDeliverer, type ChatDelivery } from "./chat-delivery.js";
import type { ChatPort } from "./chat-port.js";
import { RequestRenderer } from "./request-renderer.js";

export interface PlatformDeliveryOptions {
  port: ChatPort;
  broker: Broker;
  db: Database;
  /** The cluster's events (`gateway.cluster.events`), not the local broker's. */
  events: TypedEvents;
  connection: ConnectionOptions;
  prefix: string;
  /** The platform secret the outbox's sealing key is derived from. */
  sealSecret: string;
  logger: Logger;
  ownership?: JobOwnership | undefined;
}

/**
 * What every chat platform sends through: its outbox (one queue per platform, so one platform's
 * rate limits never delay another's), the deliverer that runs outbox jobs against its ChatPort, and
 * the renderer of domain events into its threads.
 */
export class PlatformDelivery {
  readonly outbox: ChatOutbox<ChatDelivery>;
  readonly renderer: RequestRenderer;

  constructor(options: PlatformDeliveryOptions) {
    const { port, broker, db, logger } = options;
    const deliverer = new ChatDeliverer(port, broker, db);
    this.outbox = new ChatOutbox<ChatDelivery>(`${CHAT_OUTBOX}-${port.platform}`, {
      connection: options.connection,
      prefix: options.prefix,
      ownership: options.ownership,
      seal: new OutboxSeal(options.sealSecret),
      deliver: (job) => deliverer.deliver(job),
      onError: (error, where) => logger.warn({ err: error, where }, `${port.platform} delivery failed`),
    });
    this.renderer = new RequestRenderer({
      broker,
      events: options.events,
      platform: port.platform,
      enqueue: (job, enqueueOptions) => this.outbox.enqueue(job, enqueueOptions),
    });
  }

  async start(): Promise<void> {
    await this.outbox.waitUntilReady();
    this.renderer.start();
  }

  /** Stops rendering, lets `drain` finish what is in progress, then closes the outbox. */
  async close(drain: () => Promise<void> = async () => {}): Promise<void> {
    this.renderer.stop();
    await drain();
    await this.outbox.close();
  }
}

/**
 * Work that runs after a chat platform was answered (an ack, a turn): tracked so that shutdown
 * waits for it.
 */
export class InflightWork {
  readonly #running = new Set<Promise<void>>();

  constructor(private readonly onError: (error: unknown) => void) {}

  track(work: () => Promise<void>): Promise<void> {
    const running: Promise<void> = work()
      .catch(this.onError)
      .finally(() => this.#running.delete(running));
    this.#running.add(running);
    return running;
  }

  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }
}

/** What the gateway needs of every chat adapter (Slack, Teams, the console). */
export interface ChatAdapter {
  readonly outbox: ChatOutbox<ChatDelivery>;
  /**
   * Sends the requester the connection line of a grant issued by `result` (a decision made outside
   * this adapter: a step-up approval's callback). Answers a note when it could not be delivered.
   */
  deliverConnection(result: Pick<DecideResult, "request" | "grant" | "connection">): Promise<string | undefined>;
  /** Stops taking commands and clicks and waits for those in progress (first in shutdown). */
  closeReceiver(): Promise<void>;
  /** Stops rendering events, then closes the outbox worker and queue (before Redis). */
  closeOutbox(): Promise<void>;
  close(): Promise<void>;
}

/** A chat adapter's two-step shutdown: each step runs once, however often it is asked for. */
export function adapterShutdown(steps: { receiver: () => Promise<void>; outbox: () => Promise<void> }): Pick<ChatAdapter, "closeReceiver" | "closeOutbox" | "close"> {
  let receiver: Promise<void> | undefined;
  let outbox: Promise<void> | undefined;
  const closeReceiver = () => (receiver ??= steps.receiver());
  const closeOutbox = () => (outbox ??= steps.outbox());
  return {
    closeReceiver,
    closeOutbox,
    async close() {
      try {
        await closeReceiver();
      } finally {
        await closeOutbox();
      }
    },
  };
}
