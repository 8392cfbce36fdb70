import type { UpstreamTarget } from "./upstream.js";
import { cancelUpstream } from "./upstream.js";
import { UpstreamQueries } from "./upstream-query.js";

/** How long ending a backend may take before the client is closed anyway. */
const TERMINATION_WAIT_MS = 5_000;

/**
 * Ends a client's upstream backend when its grant ends: the running statement is cancelled
 * (CancelRequest with the backend's key) and the backend itself is terminated from a session of
 * the gateway's own (`pg_terminate_backend(pid, timeout)` waits until the process is gone), so an
 * open transaction rolls back and nothing already sent to it — a statement still in the socket
 * buffer included — runs afterwards. Closing the socket alone is not enough: a backend busy in a
 * statement does not look at its socket until the statement has finished and committed.
 *
 * The terminating session uses the target's own credentials: PostgreSQL lets a role terminate the
 * backends of its own role (https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADMIN-SIGNAL).
 * Resolves with whether the backend is known to be gone; never rejects.
 */
export async function endUpstreamBackend(target: UpstreamTarget, processId: number, secretKey: number): Promise<boolean> {
  const cancel = cancelUpstream(target, processId, secretKey).catch(() => {});
  let gone = false;
  let queries: UpstreamQueries | undefined;
  try {
    queries = await UpstreamQueries.open(target, "jitgate: ending a session", TERMINATION_WAIT_MS);
    const rows = await queries.query("SELECT pg_terminate_backend($1::int, $2::bigint)", [String(processId), String(TERMINATION_WAIT_MS)]);
    // false: the backend was already gone, or did not exit within the wait.
    gone = rows[0]?.[0] === "t";
  } catch {
    gone = false;
  } finally {
    queries?.close();
  }
  await cancel;
  return gone;
}
