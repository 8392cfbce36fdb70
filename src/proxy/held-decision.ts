import type { TypedEvents } from "../broker/events.js";
import type { SessionBroker } from "../broker/sessions.js";

export type HeldVerdict = "approved" | "denied" | "timed_out";

/**
 * Holds a statement or command for approval in the request's thread and waits for its decision,
 * taken on any replica (`statement.decided` over the cluster bus), or for the review timeout, at
 * which it is recorded as timed out. Fail closed: whatever goes wrong ends in "timed_out" unless
 * the record says "approved". `onHeld` runs once the hold is recorded (to tell the user).
 */
export async function holdForDecision(
  deps: { sessions: SessionBroker; events: TypedEvents },
  session: Parameters<SessionBroker["hold"]>[0],
  text: string,
  rule: string,
  onHeld?: () => void,
): Promise<HeldVerdict> {
  const { sessions, events } = deps;
  const held = await sessions.hold(session, text, rule);
  onHeld?.();
  return new Promise((resolve) => {
    let settled = false;
    const finish = (verdict: HeldVerdict) => {
      if (settled) return;
      settled = true;
      off();
      clearTimeout(timer);
      resolve(verdict);
    };
    const off = events.on("statement.decided", (decided) => {
      if (decided.held.id === held.id) finish(decided.verdict);
    });
    const timer = setTimeout(async () => {
      try {
        finish((await sessions.decide(null, { heldId: held.id, verdict: "timed_out" })).state as "timed_out");
      } catch {
        // A decision won the race (or the database is gone): go by what is recorded, else deny.
        const current = await sessions.getHeld(held.id).catch(() => undefined);
        finish(current?.state === "approved" ? "approved" : current?.state === "denied" ? "denied" : "timed_out");
      }
    }, Math.max(0, new Date(held.timeoutAt).getTime() - Date.now()));
  });
}
