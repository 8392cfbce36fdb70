import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Broker, ManualClock, SessionBroker, type Person, type SessionSummary } from "../src/broker/index.js";
import { computeDigest, type Digest } from "../src/broker/digest.js";
import { toBlockKit } from "../src/bot/render/block-kit.js";
import { digestView, viewToPlainText } from "../src/bot/view-model.js";
import type { Storage } from "../src/db/client.js";
import { testPostgresStorage } from "./support/databases.js";
import { brokerConfig } from "./support/fixtures.js";

const CLI = join(import.meta.dirname, "..", "src", "cli.ts");
const at = (time: string) => new Date(`2026-11-20T${time}:00Z`);
const DAY = { since: at("00:00"), until: new Date("2026-11-21T00:00:00Z") };

let storage: Storage & { url: string };
let broker: Broker;
let clock: ManualClock;

const summary = (over: Partial<SessionSummary> = {}): SessionSummary => ({
  durationMs: 0,
  statementsByKind: {},
  rowsReturned: 0,
  rowsAffected: 0,
  valuesMasked: 0,
  blocked: 0,
  held: 0,
  approved: 0,
  bytesIn: 0,
  bytesOut: 0,
  endReason: "client",
  recordingId: "",
  ...over,
});

/**
 * One day of activity, each step at its own minute (the broker takes its times from the clock):
 * what the digest of 2026-11-20 must count, and a little before and after it that it must not.
 */
async function seedDay(): Promise<void> {
  const sessions = new SessionBroker(broker);
  const person = (id: string, email: string, name: string) => broker.identify({ platform: "slack", externalId: id, email, displayName: name });
  clock.set(new Date("2026-11-19T23:00:00Z"));
  const dev: Person = await person("U1", "dev@example.com", "Dev");
  const lead = await person("U2", "lead@example.com", "Lead");
  const other = await person("U3", "other@example.com", "Other");
  const second = await person("U4", "second@example.com", "Second");
  const approve = (requestId: string, by = lead) => broker.decide(by, { requestId, verdict: "approve" });

  // The day before: a 1-hour grant that is not the day's.
  const before = await broker.request(other, { target: "web-1", duration: "1h", reason: "yesterday" });
  await approve(before.id);

  // 01:00 Dev asks orders-db for 2h, approved at 01:05; at 01:30 asks 1h more (an extension request), approved.
  clock.set(at("01:00"));
  const first = await broker.request(dev, { target: "orders-db", duration: "2h", reason: "INC-1 stuck orders" });
  clock.set(at("01:05"));
  const grantA = (await approve(first.id)).grant!;
  clock.set(at("01:30"));
  const extension = await broker.extend(dev, { grantId: grantA.id, duration: "1h" });
  if (extension.kind !== "requested") throw new Error("expected an extension request");
  clock.set(at("01:35"));
  await approve(extension.request.id);

  // 02:00–02:30 a psql session: one blocked statement, three held (approved, denied, timed out).
  clock.set(at("02:00"));
  const { snapshot } = await sessions.open({ grantId: grantA.id, protocol: "postgres", clientAddress: "127.0.0.1" });
  clock.set(at("02:10"));
  await sessions.blocked(snapshot, "DROP TABLE orders", "ddl");
  clock.set(at("02:15"));
  const h1 = await sessions.hold(snapshot, "DELETE FROM orders", "delete-without-where");
  await sessions.decide(lead, { heldId: h1.id, verdict: "approved" });
  const h2 = await sessions.hold(snapshot, "TRUNCATE orders", "truncate");
  await sessions.decide(lead, { heldId: h2.id, verdict: "denied" });
  const h3 = await sessions.hold(snapshot, "UPDATE orders SET x = 1", "update-without-where");
  clock.set(at("02:25"));
  await sessions.decide(null, { heldId: h3.id, verdict: "timed_out" });
  clock.set(at("02:30"));
  await sessions.close(snapshot.id, summary({ durationMs: 30 * 60_000, blocked: 1, held: 3, approved: 1, recordingId: snapshot.id }));

  // 04:00 Other asks orders-db, denied. 04:05 Dev's grant expires (3 h in all).
  clock.set(at("04:00"));
  const denied = await broker.request(other, { target: "orders-db", duration: "1h", reason: "INC-2 look around" });
  await broker.decide(lead, { requestId: denied.id, verdict: "deny", reason: "not today" });
  clock.set(at("04:05"));
  expect((await broker.expire(grantA.id)).kind).toBe("expired");

  // 05:00 Dev gets web-1 for 3h, an SSH session 05:10–05:20, revokes it at 06:30 (1.5 h used).
  clock.set(at("05:00"));
  const web = await broker.request(dev, { target: "web-1", duration: "3h", reason: "deploy" });
  const grantB = (await approve(web.id)).grant!;
  clock.set(at("05:10"));
  const ssh = await sessions.open({ grantId: grantB.id, protocol: "ssh", clientAddress: null });
  clock.set(at("05:20"));
  await sessions.close(ssh.snapshot.id, summary({ durationMs: 10 * 60_000, recordingId: ssh.snapshot.id }));
  clock.set(at("06:30"));
  await broker.revoke(dev, { grantId: grantB.id });

  // 07:00 Other asks payments-db (quorum 2); nobody decides and it is expired at 08:01.
  clock.set(at("07:00"));
  const unanswered = await broker.request(other, { target: "payments-db", duration: "4h", reason: "reports" });
  clock.set(at("08:01"));
  expect(await broker.expireRequest(unanswered.id)).toMatchObject({ id: unanswered.id, state: "expired" });

  // 09:00 Second asks web-1: past its timeout at midnight but not yet marked (counts as expired).
  clock.set(at("09:00"));
  await broker.request(second, { target: "web-1", duration: "1h", reason: "logs" });
  // 23:30 Dev asks payments-db: still pending at midnight.
  clock.set(at("23:30"));
  await broker.request(dev, { target: "payments-db", duration: "1h", reason: "month end" });

  // The day after: not counted.
  clock.set(new Date("2026-11-21T01:00:00Z"));
  await broker.request(other, { target: "orders-db", duration: "1h", reason: "INC-3 tomorrow" });
}

beforeAll(async () => {
  storage = await testPostgresStorage("digest");
  clock = new ManualClock(new Date("2026-11-19T23:00:00Z"));
  broker = new Broker({ db: storage.db, config: brokerConfig(), clock });
  await broker.syncTargets();
  await seedDay();
});

afterAll(async () => {
  await storage?.close();
});

describe("daily digest", () => {
  let digest: Digest;

  it("counts a seeded day exactly", async () => {
    digest = await computeDigest(storage.db, DAY);
    const pendingId = digest.pending.oldest[0]?.id;
    expect(pendingId).toMatch(/^req_/);
    expect(digest.longestGrant?.id).toMatch(/^grt_/);
    expect(digest).toEqual({
      since: DAY.since,
      until: DAY.until,
      requests: { total: 7, extensions: 1, byOutcome: { approved: 3, denied: 1, expired: 2, cancelled: 0, pending: 1 } },
      grants: { issued: 2, grantedMs: 3 * 3600_000 + 1.5 * 3600_000, revoked: 1 },
      sessions: { total: 2, postgres: 1, ssh: 1 },
      topTargets: [
        { name: "orders-db", count: 3 },
        { name: "payments-db", count: 2 },
        { name: "web-1", count: 2 },
      ],
      topRequesters: [
        { name: "Dev", count: 4 },
        { name: "Other", count: 2 },
        { name: "Second", count: 1 },
      ],
      statements: { blocked: 1, held: 3, approved: 1, denied: 1, timedOut: 1 },
      pending: { count: 1, oldest: [{ id: pendingId, target: "payments-db", requesterName: "Dev", createdAt: at("23:30") }] },
      longestGrant: { id: digest.longestGrant!.id, target: "orders-db", holderName: "Dev", grantedMs: 3 * 3600_000 },
      breakGlassUnreviewed: [],
    });
  });

  it("an empty window counts nothing, and ranks no one", async () => {
    const empty = await computeDigest(storage.db, { since: new Date("2026-01-01T00:00:00Z"), until: new Date("2026-01-02T00:00:00Z") });
    expect(empty.requests.total).toBe(0);
    expect(empty.grants).toEqual({ issued: 0, grantedMs: 0, revoked: 0 });
    expect(empty.topTargets).toEqual([]);
    expect(empty.longestGrant).toBeNull();
    expect(viewToPlainText(digestView(empty))).toContain("Longest grant: none");
  });

  it("renders as a Block Kit message with every figure", async () => {
    const view = digestView(digest);
    const text = JSON.stringify(toBlockKit(view).blocks);
    for (const part of [
      "7: 3 approved, 1 denied, 2 expired, 1 pending (1 extension)",
      "2, 4.5 h in total, 1 revoked",
      "2 (1 postgres, 1 ssh)",
      "3: 1 approved, 1 denied, 1 expired",
      "Top targets: orders-db (3), payments-db (2), web-1 (2)",
      "Top requesters: Dev (4), Other (2), Second (1)",
      "Longest grant: Dev on orders-db, 3.0 h",
    ]) {
      expect(text).toContain(part);
    }
  });

  it("shows its times in digest.timezone, naming the zone, with the date where the day differs", () => {
    const window = { ...digest, since: new Date("2026-03-10T09:00:00Z"), until: new Date("2026-03-11T09:00:00Z") };
    expect(digestView(window).title).toBe("jitgate digest: 09:00 UTC – 2026-03-11 09:00 UTC");
    expect(digestView(window, "Europe/Berlin").title).toBe("jitgate digest: 10:00 Europe/Berlin – 2026-03-11 10:00 Europe/Berlin");
    // 09:00 UTC is 22:00 the same day in Auckland (+13 in March), and the window ends the next day there.
    expect(digestView(window, "Pacific/Auckland").title).toBe("jitgate digest: 22:00 Pacific/Auckland – 2026-03-11 22:00 Pacific/Auckland");
  });

  it("`jitgate digest --now --dry-run` prints the same digest, in digest.timezone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jitgate-digest-"));
    try {
      const file = join(dir, "jitgate.yaml");
      writeFileSync(file, `database: \${DATABASE_URL}\ndataDir: ${join(dir, "data")}\nlog: { level: warn }\ndigest: { timezone: America/Los_Angeles }\n`);
      const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          ["--import", "tsx", CLI, "-c", file, "digest", "--now", "--since", DAY.since.toISOString(), "--until", DAY.until.toISOString(), "--dry-run"],
          { env: { ...process.env, DATABASE_URL: storage.url }, stdio: ["ignore", "pipe", "pipe"] },
        );
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk) => (stdout += chunk));
        child.stderr.on("data", (chunk) => (stderr += chunk));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
      });
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).toBe(`${viewToPlainText(digestView(digest, "America/Los_Angeles"))}\n`);
      expect(run.stdout.split("\n")[0]).toMatch(/^jitgate digest: .*\d\d:\d\d America\/Los_Angeles – .*\d\d:\d\d America\/Los_Angeles$/);
      expect(run.stdout).toContain("Requests: 7: 3 approved, 1 denied, 2 expired, 1 pending (1 extension)");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
