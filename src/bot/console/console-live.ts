import type { Redis } from "ioredis";
import type { ConsoleChange } from "./console-port.js";

/**
 * Live updates of the console across replicas: every write to `console_messages` is announced on
 * one Redis pub/sub channel (`<redisPrefix>:console`), and each replica passes what it hears to
 * its open event streams. The announcement carries no message content (a DM holds a connection
 * line): a browser that hears it fetches its page again, as itself.
 */
export class ConsoleLive {
  readonly #listeners = new Set<(change: ConsoleChange) => void>();
  readonly #channel: string;
  #started = false;

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    prefix: string,
    private readonly onError: (error: unknown) => void,
  ) {
    this.#channel = `${prefix}:console`;
  }

  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    this.subscriber.on("message", (channel: string, text: string) => {
      if (channel !== this.#channel) return;
      let change: ConsoleChange;
      try {
        change = JSON.parse(text) as ConsoleChange;
      } catch (error) {
        this.onError(error);
        return;
      }
      for (const listener of this.#listeners) listener(change);
    });
    await this.subscriber.subscribe(this.#channel);
  }

  /**
   * Announces a change to every replica (this one included, through Redis). Not awaited by the
   * writer: while Redis is away the command would wait in ioredis's offline queue, and the message
   * is already written; browsers see it on their next load.
   */
  publish(change: ConsoleChange): void {
    this.publisher.publish(this.#channel, JSON.stringify(change)).catch(this.onError);
  }

  listen(listener: (change: ConsoleChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async stop(): Promise<void> {
    this.#listeners.clear();
    if (this.#started && this.subscriber.status === "ready") await this.subscriber.unsubscribe(this.#channel).catch(() => {});
  }
}
