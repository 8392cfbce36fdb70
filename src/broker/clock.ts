/** Time is injected wherever it is the subject (expiry, timeouts), so tests are exact without sleeping. */
export interface Clock {
  now(): Date;
  /**
   * Runs `fire` once, when this clock reaches `at`. Optional: a clock without it is served by real
   * timers measured against its `now()` (see `timerAt`); ManualClock fires its timers as it is moved.
   */
  setTimer?(at: Date, fire: () => void): ClockTimer;
}

/** A call waiting for a time on a clock. */
export interface ClockTimer {
  /** Stops it; safe to call after it fired, and twice. */
  cancel(): void;
}

export const systemClock: Clock = { now: () => new Date() };

// setTimeout takes at most a signed 32-bit delay; a longer wait is done in steps.
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Runs `fire` once `clock` reads `at` or later: with the clock's own timers when it has them (a test
 * moves a ManualClock and the timer fires, without sleeping), else with real timers that re-check the
 * clock when they fire, so an early or clamped timeout never fires before `at`.
 */
export function timerAt(clock: Clock, at: Date, fire: () => void): ClockTimer {
  if (clock.setTimer) return clock.setTimer(at, fire);
  let handle: NodeJS.Timeout | undefined;
  let cancelled = false;
  const arm = () => {
    const delay = Math.min(Math.max(0, at.getTime() - clock.now().getTime()), MAX_TIMEOUT_MS);
    handle = setTimeout(() => {
      if (cancelled) return;
      if (clock.now().getTime() < at.getTime()) arm();
      else fire();
    }, delay);
  };
  arm();
  return {
    cancel() {
      cancelled = true;
      clearTimeout(handle);
    },
  };
}

/** A clock the test moves by hand; its timers fire, in time order, when it is moved past them. */
export class ManualClock implements Clock {
  #ms: number;
  readonly #timers = new Set<{ at: number; fire: () => void }>();
  constructor(start: Date | number = Date.now()) {
    this.#ms = typeof start === "number" ? start : start.getTime();
  }
  now(): Date {
    return new Date(this.#ms);
  }
  advance(ms: number): void {
    this.#ms += ms;
    this.#fireDue();
  }
  set(at: Date | number): void {
    this.#ms = typeof at === "number" ? at : at.getTime();
    this.#fireDue();
  }
  setTimer(at: Date, fire: () => void): ClockTimer {
    const timer = { at: at.getTime(), fire };
    this.#timers.add(timer);
    // A time already passed fires soon, as a real timer would, not inside the caller.
    if (timer.at <= this.#ms) queueMicrotask(() => this.#fireDue());
    return { cancel: () => void this.#timers.delete(timer) };
  }
  #fireDue(): void {
    // A timer may set another (a re-armed expiry): keep going until none is due.
    for (;;) {
      let next: { at: number; fire: () => void } | undefined;
      for (const timer of this.#timers) if (timer.at <= this.#ms && (!next || timer.at < next.at)) next = timer;
      if (!next) return;
      this.#timers.delete(next);
      next.fire();
    }
  }
}
