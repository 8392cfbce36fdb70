import { timerAt, type Clock, type ClockTimer } from "../broker/clock.js";

/**
 * A live session's own end at its grant's `expiresAt`, on the injected clock. The expiry job ends
 * the grant for every replica, but a late or lost job must never extend access (DESIGN.md, "Fail
 * closed"), so each session also keeps this timer; `extendTo` moves it when the grant is extended.
 * The PostgreSQL and SSH sessions share it through admission.
 */
export class GrantTimer {
  #expiresAt: Date;
  #timer: ClockTimer | undefined;
  #stopped = false;

  constructor(
    private readonly clock: Clock,
    expiresAt: Date,
    private readonly onExpired: () => void,
  ) {
    this.#expiresAt = expiresAt;
    this.#arm();
  }

  get expiresAt(): Date {
    return this.#expiresAt;
  }

  /** The grant's end moved (extend): fire at the new time instead. */
  extendTo(at: Date): void {
    if (this.#stopped) return;
    this.#expiresAt = at;
    this.#arm();
  }

  /** The session ended another way; nothing fires any more. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
  }

  #arm(): void {
    this.#timer?.cancel();
    this.#timer = timerAt(this.clock, this.#expiresAt, () => {
      if (this.#stopped) return;
      this.#stopped = true;
      this.onExpired();
    });
  }
}
