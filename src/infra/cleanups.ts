import type { Logger } from "./logger.js";

type Run = () => Promise<void> | void;

/**
 * What a running gateway must undo, in the order it was started. Each module of the composition
 * root adds its own steps as it starts; `close()` runs them in reverse (STYLE.md 10: chat receivers
 * → proxies → workers → Redis → database), each with a deadline, and goes on when one fails or
 * hangs, so one stuck part never keeps the others open (as BullMQ's `Worker.close`). Memoised: a
 * second call returns the first call's promise.
 */
export class Cleanups {
  readonly #steps: { name: string; run: Run }[] = [];
  #closing: Promise<void> | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly deadlineMs = 15_000,
  ) {}

  add(name: string, run: Run): void {
    this.#steps.push({ name, run });
  }

  get closing(): boolean {
    return this.#closing !== undefined;
  }

  /** Runs every step; rejects with an AggregateError of the failures once all have run. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const failures: unknown[] = [];
      for (const { name, run } of [...this.#steps].reverse()) {
        const error = await this.#step(name, run);
        if (error === undefined) continue;
        failures.push(error);
        this.logger.error({ err: error, step: name }, "shutdown step failed");
      }
      if (failures.length > 0) throw new AggregateError(failures, `${failures.length} shutdown step(s) failed`);
    })();
    return this.#closing;
  }

  /** After a failed start: undoes what had started, then throws the start's error (not the cleanups'). */
  async abort(error: unknown): Promise<never> {
    await this.close().catch(() => {});
    throw error;
  }

  async #step(name: string, run: Run): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(run),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${name} did not close within ${this.deadlineMs} ms`)), this.deadlineMs);
          timer.unref();
        }),
      ]);
      return undefined;
    } catch (error) {
      return error ?? new Error(`${name} failed`);
    } finally {
      clearTimeout(timer);
    }
  }
}
