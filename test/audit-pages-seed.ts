import { Broker, ManualClock, SessionBroker, StatementLog, type Person } from "../src/broker/index.js";
import type { Database } from "../src/db/client.js";
import { sessionRecordings } from "../src/db/schema.js";
import { AsciicastRecorder } from "../src/proxy/recording/asciicast.js";
import { brokerConfig } from "./support/fixtures.js";

/**
 * What the audit page tests look at, made through the real broker, session broker and statement
 * log on a real database, with a hand-moved clock:
 * - day 1, 09:00: Ann asks for orders-db, Lee approves; a PostgreSQL session runs a SELECT, a
 *   statement with markup in it, a DELETE held and approved by Lee, a DROP blocked; the grant expires.
 * - day 2, 14:00: Bob asks for web-1 (SSH), Lee approves; a shell is recorded (asciicast) and an SFTP
 *   upload audited.
 */
export const DAY1 = new Date("2026-03-10T09:00:00Z");
export const DAY2 = new Date("2026-03-11T14:00:00Z");
export const MARKUP_STATEMENT = "SELECT '<script>alert(1)</script>' AS x";
export const SHELL_OUTPUT = "deploy@web-1:~$ uptime\r\n 14:00:05 up 12 days,  load average: 0.01\r\n";

export interface Seeded {
  broker: Broker;
  clock: ManualClock;
  people: { ann: Person; bob: Person; lee: Person };
  pg: { requestId: string; grantId: string; sessionId: string; heldId: string };
  ssh: { requestId: string; sessionId: string; cast: string };
}

export async function seedAuditHistory(db: Database): Promise<Seeded> {
  const clock = new ManualClock(DAY1);
  const broker = new Broker({
    db,
    clock,
    config: brokerConfig(),
  });
  await broker.syncTargets();
  const sessions = new SessionBroker(broker);
  const log = new StatementLog(db, (error) => {
    throw error;
  }, 10);
  const ann = await broker.identify({ platform: "console", externalId: "ann", email: "ann@example.com", displayName: "Ann Example" });
  const bob = await broker.identify({ platform: "console", externalId: "bob", email: "bob@example.com", displayName: "Bob Builder" });
  const lee = await broker.identify({ platform: "console", externalId: "lee", email: "lead@example.com", displayName: "Lee Lead" });

  // Day 1: a PostgreSQL request, its session and its end.
  const request = await broker.request(ann, { target: "orders-db", duration: "1h", reason: "INC-4711 stuck orders" });
  clock.advance(30_000);
  const { grant } = await broker.decide(lee, { requestId: request.id, verdict: "approve", reason: "go ahead" });
  clock.advance(60_000);
  const opened = await sessions.open({ grantId: grant!.id, protocol: "postgres", clientAddress: "10.1.2.3" });
  const session = opened.snapshot;
  const statement = async (seq: number, text: string, kind: string, verdict: "allow" | "review" | "block", extra: { rule?: string; heldId?: string } = {}) => {
    await log.record([{ sessionId: session.id, seq, protocol: "simple", kind, text, verdict, startedAt: clock.now(), rule: extra.rule ?? null, heldId: extra.heldId ?? null }]);
  };
  await statement(1, "SELECT id, state FROM orders WHERE state = 'stuck'", "select", "allow");
  log.complete({ sessionId: session.id, seq: 1, durationMs: 3, rows: 2, commandTag: "SELECT 2", error: null });
  clock.advance(5_000);
  await statement(2, MARKUP_STATEMENT, "select", "allow");
  log.complete({ sessionId: session.id, seq: 2, durationMs: 1, rows: 1, commandTag: "SELECT 1", error: null });
  clock.advance(5_000);
  const held = await sessions.hold(session, "DELETE FROM orders", "delete-without-where");
  await statement(3, "DELETE FROM orders", "delete", "review", { rule: "delete-without-where", heldId: held.id });
  clock.advance(20_000);
  await sessions.decide(lee, { heldId: held.id, verdict: "approved" });
  log.complete({ sessionId: session.id, seq: 3, durationMs: 7, rows: 4, commandTag: "DELETE 4", error: null });
  clock.advance(5_000);
  await statement(4, "DROP TABLE orders", "ddl", "block", { rule: "ddl" });
  await sessions.blocked(session, "DROP TABLE orders", "ddl");
  await log.flushOutcomes();
  clock.advance(60_000);
  await sessions.close(session.id, {
    durationMs: 95_000,
    statementsByKind: { select: 2, delete: 1, ddl: 1 },
    rowsReturned: 3,
    rowsAffected: 4,
    valuesMasked: 0,
    blocked: 1,
    held: 1,
    approved: 1,
    bytesIn: 200,
    bytesOut: 900,
    endReason: "client",
    recordingId: session.id,
  });
  clock.set(grant!.expiresAt.getTime() + 1);
  await broker.expire(grant!.id);

  // Day 2: an SSH session with a recorded shell and a file upload.
  clock.set(DAY2);
  const sshRequest = await broker.request(bob, { target: "web-1", duration: "30m", reason: "restart nginx" });
  clock.advance(10_000);
  const sshGrant = (await broker.decide(lee, { requestId: sshRequest.id, verdict: "approve" })).grant!;
  clock.advance(10_000);
  const ssh = (await sessions.open({ grantId: sshGrant.id, protocol: "ssh", clientAddress: "10.9.8.7" })).snapshot;
  const recorder = new AsciicastRecorder({ width: 80, height: 24, term: "xterm-256color" }, { now: () => clock.now().getTime() });
  recorder.output(Buffer.from("\x1b[1;32mdeploy@web-1\x1b[0m:~$ "));
  clock.advance(1_500);
  recorder.input("uptime\r");
  recorder.output(Buffer.from("uptime\r\n 14:00:05 up 12 days,  load average: 0.01\r\n"));
  clock.advance(1_000);
  await sessions.audit({
    kind: "ssh.file",
    actorId: ssh.personId,
    target: ssh.target,
    requestId: ssh.requestId,
    grantId: ssh.grantId,
    sessionId: ssh.id,
    data: { op: "write", path: "/etc/nginx/nginx.conf", bytes: 2048, ok: true },
  });
  const cast = recorder.toString();
  await db.insert(sessionRecordings).values({ sessionId: ssh.id, channel: 1, kind: "shell", title: "xterm-256color", cast, truncated: false, createdAt: clock.now() });
  await sessions.close(ssh.id, {
    durationMs: 2_500,
    statementsByKind: { other: 1 },
    rowsReturned: 0,
    rowsAffected: 0,
    valuesMasked: 0,
    blocked: 0,
    held: 0,
    approved: 0,
    bytesIn: 7,
    bytesOut: 120,
    endReason: "client",
    recordingId: ssh.id,
  });

  return {
    broker,
    clock,
    people: { ann, bob, lee },
    pg: { requestId: request.id, grantId: grant!.id, sessionId: session.id, heldId: held.id },
    ssh: { requestId: sshRequest.id, sessionId: ssh.id, cast },
  };
}
