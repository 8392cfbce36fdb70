import { asc, eq } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { sessionRecordings } from "../db/schema.js";

export type RecordingRow = typeof sessionRecordings.$inferSelect;

/** One recorded SSH channel as the proxy hands it over when the session ends. */
export interface ChannelCast {
  channel: number;
  kind: string;
  title: string | null;
  cast: string;
  truncated: boolean;
}

/** Stores a session's recorded channels once (a second close of the same session adds nothing). */
export async function storeRecordings(db: Executor, sessionId: string, recordings: readonly ChannelCast[], now: Date): Promise<void> {
  if (recordings.length === 0) return;
  await db
    .insert(sessionRecordings)
    .values(recordings.map((r) => ({ sessionId, channel: r.channel, kind: r.kind, title: r.title, cast: r.cast, truncated: r.truncated, createdAt: now })))
    .onConflictDoNothing();
}

/** Every recorded channel of a session, in channel order (`jitgate replay`). */
export async function recordingsOf(db: Executor, sessionId: string): Promise<RecordingRow[]> {
  return db.select().from(sessionRecordings).where(eq(sessionRecordings.sessionId, sessionId)).orderBy(asc(sessionRecordings.channel));
}
