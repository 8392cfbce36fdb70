import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { asc, desc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionBroker, StatementLog } from "../src/broker/index.js";
import { auditEvents, sessionStatements } from "../src/db/schema.js";
import type { Storage } from "../src/db/client.js";
import { readTarGz, TarError, writeTarGz, type TarEntry } from "../src/infra/tar.js";
import { MARKUP_STATEMENT, seedAuditHistory, type Seeded } from "./audit-pages-seed.js";
import { testPostgresStorage } from "./support/databases.js";
import { runProcess } from "./support/processes.js";

/**
 * `jitgate audit show`, `audit export` and `audit verify --bundle`, run as the real command on a
 * real PostgreSQL database seeded through the broker, the session broker and the statement log.
 */

const CLI = join(import.meta.dirname, "..", "src", "cli.ts");

let dir: string;
let storage: Storage & { url: string };
let seeded: Seeded;
let env: NodeJS.ProcessEnv;
/** A second orders-db session (Bob's) with bind parameters, on day 2. */
let paramSession: string;

function jitgate(args: string[]) {
  return runProcess(process.execPath, ["--import", "tsx", CLI, ...args], { env, timeoutMs: 60_000 });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-evidence-"));
  storage = await testPostgresStorage("evidence");
  seeded = await seedAuditHistory(storage.db);
  const { broker, clock, people } = seeded;
  const request = await broker.request(people.bob, { target: "orders-db", duration: "1h", reason: "JIRA-7 look up one order" });
  const { grant } = await broker.decide(people.lee, { requestId: request.id, verdict: "approve" });
  const sessions = new SessionBroker(broker);
  const opened = (await sessions.open({ grantId: grant!.id, protocol: "postgres", clientAddress: "10.5.5.5" })).snapshot;
  const log = new StatementLog(storage.db, (error) => {
    throw error;
  }, 10);
  await log.record([{ sessionId: opened.id, seq: 1, protocol: "extended", kind: "select", text: "SELECT * FROM orders WHERE id = $1 AND note = $2", parameters: ["42", null], verdict: "allow", startedAt: clock.now() }]);
  log.complete({ sessionId: opened.id, seq: 1, durationMs: 2, rows: 0, commandTag: null, error: 'relation "orders" does not exist' });
  await log.flushOutcomes();
  clock.advance(1_000);
  await sessions.close(opened.id, { durationMs: 1_000, statementsByKind: { select: 1 }, rowsReturned: 0, rowsAffected: 0, valuesMasked: 0, blocked: 0, held: 0, approved: 0, bytesIn: 10, bytesOut: 10, endReason: "client", recordingId: opened.id });
  paramSession = opened.id;

  const configFile = join(dir, "jitgate.yaml");
  writeFileSync(configFile, `database: \${DATABASE_URL}\ndataDir: ${join(dir, "data")}\nlog: { level: warn }\n`);
  env = { DATABASE_URL: storage.url, JITGATE_CONFIG: configFile };
});

afterAll(async () => {
  await storage?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the tar writer and reader", () => {
  it("writes what the system's tar lists and extracts byte for byte", async () => {
    const entries: TarEntry[] = [
      { name: "manifest.json", body: Buffer.from('{"a":1}\n') },
      { name: "empty.jsonl", body: Buffer.alloc(0) },
      { name: "exact.bin", body: Buffer.alloc(512, 7) },
      { name: "recordings/ses_1-1.cast", body: Buffer.from("é\u0000\r\n".repeat(300)) },
    ];
    const file = join(dir, "t.tar.gz");
    writeFileSync(file, writeTarGz(entries, new Date("2026-03-10T09:00:00Z")));
    const listed = await runProcess("tar", ["-tzvf", file]);
    expect(listed.code).toBe(0);
    expect(listed.stdout.trim().split("\n").map((line) => line.split(/\s+/).pop())).toEqual(entries.map((e) => e.name));
    const out = join(dir, "t-out");
    mkdirSync(out);
    expect((await runProcess("tar", ["-xzf", file, "-C", out])).code).toBe(0);
    for (const entry of entries) expect(readFileSync(join(out, entry.name)).equals(entry.body)).toBe(true);
    expect(readTarGz(readFileSync(file), 1 << 20)).toEqual(entries);
  });

  it("reads what the system's tar writes, and refuses what it never writes", async () => {
    const src = join(dir, "t-src");
    mkdirSync(join(src, "recordings"), { recursive: true });
    writeFileSync(join(src, "a.jsonl"), "x\n");
    writeFileSync(join(src, "recordings", "b.cast"), "y");
    const file = join(dir, "system.tar.gz");
    expect((await runProcess("tar", ["--format=ustar", "-czf", file, "-C", src, "a.jsonl", "recordings/b.cast"])).code).toBe(0);
    expect(readTarGz(readFileSync(file), 1 << 20).map((e) => [e.name, e.body.toString()])).toEqual([["a.jsonl", "x\n"], ["recordings/b.cast", "y"]]);

    // A directory entry, a climbing name, a damaged header, a cut archive, too large once unpacked.
    const withDir = join(dir, "dir.tar.gz");
    await runProcess("tar", ["--format=ustar", "-czf", withDir, "-C", src, "recordings"]);
    expect(() => readTarGz(readFileSync(withDir), 1 << 20)).toThrow(/is not a regular file/);
    expect(() => writeTarGz([{ name: "../etc/passwd", body: Buffer.alloc(1) }], new Date())).toThrow(TarError);
    const good = gunzipSync(writeTarGz([{ name: "a", body: Buffer.from("hello") }], new Date()));
    const climbing = Buffer.from(good);
    climbing.write("../a", 0, "ascii");
    expect(() => readTarGz(gzipSync(climbing), 1 << 20)).toThrow(/damaged|climbs|plain file name/);
    const damaged = Buffer.from(good);
    damaged[130] = damaged[130]! ^ 1;
    expect(() => readTarGz(gzipSync(damaged), 1 << 20)).toThrow(/damaged \(checksum\)/);
    expect(() => readTarGz(gzipSync(good.subarray(0, 512)), 1 << 20)).toThrow(/cut short/);
    expect(() => readTarGz(gzipSync(Buffer.alloc(4096)), 1024)).toThrow(/larger than 1024 bytes/);
  });
});

describe("jitgate audit show", () => {
  it("prints a PostgreSQL session's timeline: who, where, grant, request, each statement with its outcome", async () => {
    const run = await jitgate(["audit", "show", seeded.pg.sessionId]);
    expect(run.code).toBe(0);
    const out = run.stdout;
    expect(out).toContain(`PostgreSQL session ${seeded.pg.sessionId} on orders-db`);
    expect(out).toContain("person    Ann Example <ann@example.com>");
    expect(out).toContain("client    10.1.2.3");
    expect(out).toContain(`request   ${seeded.pg.requestId}: 1h asked 2026-03-10T09:00:00.000Z, “INC-4711 stuck orders” (approved)`);
    expect(out).toContain(`grant     ${seeded.pg.grantId}: `);
    expect(out).toContain("Statements (4)");
    expect(out).toMatch(/ {2}#1 {2}2026-03-10T09:01:30\.000Z {2}allow {2}select {2}3 ms {2}2 rows {2}SELECT 2\n {6}SELECT id, state FROM orders WHERE state = 'stuck'\n/);
    expect(out).toContain(`      ${MARKUP_STATEMENT}\n`);
    expect(out).toMatch(/#3 {2}\S+ {2}review \(delete-without-where\) {2}delete {2}7 ms {2}4 rows {2}DELETE 4\n {6}DELETE FROM orders\n {6}held \S+: approved by Lee Lead at 2026-/);
    expect(out).toContain(`held ${seeded.pg.heldId}: approved by Lee Lead`);
    expect(out).toMatch(/#4 {2}\S+ {2}block \(ddl\) {2}ddl\n {6}DROP TABLE orders\n/);
    expect(out).toMatch(/#\d+ {2}\S+ {2}session\.opened {2}Ann Example <ann@example\.com> {2}\{.*"clientAddress":"10\.1\.2\.3"/);
    expect(out).toContain("statement.blocked");

    const params = await jitgate(["audit", "show", paramSession]);
    expect(params.stdout).toContain("      SELECT * FROM orders WHERE id = $1 AND note = $2\n      parameters: $1=42, $2=NULL\n");
    expect(params.stdout).toContain('      error: relation "orders" does not exist\n');
  }, 60_000);

  it("prints one statement with --statement, JSON lines with --json, and the rows match the database", async () => {
    const one = await jitgate(["audit", "show", seeded.pg.sessionId, "--statement", "3"]);
    expect(one.code).toBe(0);
    expect(one.stdout).toContain("Statement 3\n");
    expect(one.stdout).toContain("DELETE FROM orders");
    expect(one.stdout).not.toContain("DROP TABLE");
    expect(one.stdout).not.toContain("Events (");

    const json = await jitgate(["audit", "show", seeded.pg.sessionId, "--json"]);
    expect(json.code).toBe(0);
    const lines = json.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: "session", session: { id: seeded.pg.sessionId, target: "orders-db" }, person: { email: "ann@example.com" }, requestId: seeded.pg.requestId, grant: { id: seeded.pg.grantId } });
    const stored = await storage.db.select().from(sessionStatements).where(eq(sessionStatements.sessionId, seeded.pg.sessionId)).orderBy(asc(sessionStatements.seq));
    const printed = lines.filter((l) => l.type === "statement");
    expect(printed).toEqual(stored.map((s) => ({ type: "statement", ...JSON.parse(JSON.stringify(s)) })));
    expect(lines.filter((l) => l.type === "held")).toMatchObject([{ id: seeded.pg.heldId, state: "approved" }]);
    expect(lines.filter((l) => l.type === "event").map((l) => l.kind)).toEqual(["session.opened", "statement.held", "statement.approved", "statement.blocked", "session.closed"]);

    const missing = await jitgate(["audit", "show", seeded.pg.sessionId, "--statement", "9"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`session ${seeded.pg.sessionId} has no statement 9\n`);
    const unknown = await jitgate(["audit", "show", "ses_nope"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe("no session ses_nope\n");
  }, 60_000);

  it("prints an SSH session's file operations and recorded channels", async () => {
    const run = await jitgate(["audit", "show", seeded.ssh.sessionId]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`SSH session ${seeded.ssh.sessionId} on web-1`);
    expect(run.stdout).toContain(`Recordings (1)\n  channel 1  shell xterm-256color  2026-03-11T14:00:22.500Z  (jitgate replay ${seeded.ssh.sessionId} --channel 1)`);
    expect(run.stdout).toMatch(/ssh\.file {2}Bob Builder <bob@example\.com> {2}\{"bytes":2048,"ok":true,"op":"write","path":"\/etc\/nginx\/nginx\.conf"\}/);
    expect(run.stdout).not.toContain("Statements (");
  }, 60_000);

  it("--reveal needs one statement, a reason and who reveals, and an auditor (none is configured here)", async () => {
    const noReason = await jitgate(["audit", "show", seeded.pg.sessionId, "--statement", "1", "--reveal", "--as", "bob@example.com"]);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain("--reveal shows one statement's originals at a time, by an auditor, with a stated reason");
    expect(noReason.stdout).toBe("");
    const noStatement = await jitgate(["audit", "show", seeded.pg.sessionId, "--reveal", "--reason", "INC-1", "--as", "bob@example.com"]);
    expect(noStatement.code).toBe(2);
    const noOne = await jitgate(["audit", "show", seeded.pg.sessionId, "--statement", "1", "--reveal", "--reason", "INC-1"]);
    expect(noOne.code).toBe(2);
    const before = await storage.db.select().from(auditEvents);
    const reveal = await jitgate(["audit", "show", seeded.pg.sessionId, "--statement", "1", "--reveal", "--reason", "INC-4711 what did Ann see", "--as", "bob@example.com"]);
    expect(reveal.code).toBe(1);
    expect(reveal.stderr).toBe("only auditors may reveal the originals of masked results\n");
    expect(reveal.stdout).toBe("");
    // Nothing was revealed, so nothing was recorded as a reveal.
    expect(await storage.db.select().from(auditEvents)).toHaveLength(before.length);
  }, 60_000);
});

/** Unpacks, changes and repacks a bundle as someone with the file and our own tools would. */
function tampered(bundle: Buffer, change: (entries: TarEntry[]) => TarEntry[]): string {
  const entries = change(readTarGz(bundle, 1 << 26).map((e) => ({ name: e.name, body: Buffer.from(e.body) })));
  const file = join(dir, `tampered-${Math.random().toString(36).slice(2)}.tar.gz`);
  writeFileSync(file, writeTarGz(entries, new Date()));
  return file;
}
const edit = (name: string, f: (text: string) => string) => (entries: TarEntry[]) =>
  entries.map((e) => (e.name === name ? { name, body: Buffer.from(f(e.body.toString("utf8")), "utf8") } : e));

describe("jitgate audit export and audit verify --bundle", () => {
  let bundlePath: string;
  let bundle: Buffer;

  it("exports the range with the chain segment, sessions, statements and recordings, records the export, and verifies", async () => {
    const [headBefore] = await storage.db.select().from(auditEvents).orderBy(desc(auditEvents.seq)).limit(1);
    bundlePath = join(dir, "evidence.tar.gz");
    const run = await jitgate(["audit", "export", "--since", "2026-03-10T00:00:00Z", "--until", "2026-03-12T00:00:00Z", "--out", bundlePath]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^wrote .*evidence\.tar\.gz: events 1–\d+, 3 requests, 3 sessions, 5 statements, 0 results, 1 recordings; manifest [0-9a-f]{64}\n$/);
    bundle = readFileSync(bundlePath);

    const files = new Map(readTarGz(bundle, 1 << 26).map((e) => [e.name, e.body.toString("utf8")]));
    const manifest = JSON.parse(files.get("manifest.json")!) as { chain: { firstSeq: number; lastSeq: number; firstPrevHash: string; lastHash: string; head: { seq: number; hash: string } }; files: Record<string, { sha256: string }>; manifestDigest: string; counts: Record<string, number> };
    expect(manifest.chain.head).toEqual({ seq: headBefore!.seq, hash: headBefore!.hash });
    expect(manifest.chain.firstPrevHash).toBe("0".repeat(64));
    // Every event in the database in the range, as stored.
    const stored = await storage.db.select().from(auditEvents).orderBy(asc(auditEvents.seq));
    const inBundle = files.get("events.jsonl")!.trim().split("\n").map((l) => JSON.parse(l) as { seq: number; hash: string; kind: string });
    expect(inBundle.map((e) => [e.seq, e.hash])).toEqual(stored.filter((e) => e.seq <= headBefore!.seq).map((e) => [e.seq, e.hash]));
    expect(files.get("statements.jsonl")!.trim().split("\n")).toHaveLength(5);
    expect(files.get("sessions.jsonl")!.trim().split("\n")).toHaveLength(3);
    expect(files.get(`recordings/${seeded.ssh.sessionId}-1.cast`)).toBe(seeded.ssh.cast);
    expect(Object.keys(manifest.files).sort()).toEqual([...files.keys()].filter((n) => n !== "manifest.json").sort());

    // The export is itself in the chain, with the manifest's digest.
    const [exported] = await storage.db.select().from(auditEvents).where(eq(auditEvents.kind, "audit.exported"));
    expect(exported!.seq).toBe(headBefore!.seq + 1);
    expect(exported!.prevHash).toBe(headBefore!.hash);
    expect(exported!.data).toMatchObject({ manifestDigest: manifest.manifestDigest, since: "2026-03-10T00:00:00.000Z", until: "2026-03-12T00:00:00.000Z" });

    const verified = await jitgate(["audit", "verify", "--bundle", bundlePath]);
    expect(verified.stderr).toBe("");
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain(`bundle ok: 2026-03-10T00:00:00.000Z – 2026-03-12T00:00:00.000Z; events 1–${manifest.chain.lastSeq}`);
    expect(verified.stdout).toContain(`chain head at export ${headBefore!.seq} ${headBefore!.hash}`);

    // An existing file is never overwritten.
    const again = await jitgate(["audit", "export", "--since", "2026-03-10", "--until", "2026-03-12", "--out", bundlePath]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`cannot write ${bundlePath}`);
    expect(readFileSync(bundlePath).equals(bundle)).toBe(true);
  }, 60_000);

  it("verifies with no configuration and no database (what an auditor does with the file alone)", async () => {
    const run = await runProcess(process.execPath, ["--import", "tsx", CLI, "audit", "verify", "--bundle", bundlePath], { env: { DATABASE_URL: "", JITGATE_CONFIG: join(dir, "absent.yaml") }, timeoutMs: 60_000 });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("bundle ok");
  }, 60_000);

  async function refused(file: string): Promise<string> {
    const run = await jitgate(["audit", "verify", "--bundle", file]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/^bundle NOT verified:\n/);
    return run.stderr;
  }

  it("names an edited event", async () => {
    const stderr = await refused(tampered(bundle, edit("events.jsonl", (t) => t.replace("INC-4711 stuck orders", "INC-4711 stuck orderz"))));
    expect(stderr).toMatch(/ {2}event \d+: its content does not match its hash \(edited\)\n/);
    expect(stderr).toContain("events.jsonl: its SHA-256 does not match the manifest (edited)");
  }, 60_000);

  it("names a removed event", async () => {
    const file = tampered(bundle, edit("events.jsonl", (t) => t.split("\n").filter((_line, i) => i !== 4).join("\n")));
    const stderr = await refused(file);
    expect(stderr).toContain("event 5 is missing (event 6 follows event 4) (removed)");
  }, 60_000);

  it("names a removed event even when the forger also fixes the file's digest in the manifest", async () => {
    const file = tampered(bundle, (entries) => {
      const events = entries.find((e) => e.name === "events.jsonl")!;
      events.body = Buffer.from(events.body.toString().split("\n").filter((_l, i) => i !== 2).join("\n"));
      const manifest = entries.find((e) => e.name === "manifest.json")!;
      const m = JSON.parse(manifest.body.toString()) as { files: Record<string, { sha256: string; bytes: number }> };
      m.files["events.jsonl"] = { sha256: createHash("sha256").update(events.body).digest("hex"), bytes: events.body.length };
      manifest.body = Buffer.from(JSON.stringify(m));
      return entries;
    });
    const stderr = await refused(file);
    expect(stderr).toContain("event 3 is missing (event 4 follows event 2) (removed)");
    expect(stderr).toContain("manifest.json: its content does not match its digest (edited)");
    expect(stderr).not.toContain("events.jsonl: its SHA-256");
  }, 60_000);

  it("names an edited statement row", async () => {
    const stderr = await refused(tampered(bundle, edit("statements.jsonl", (t) => t.replace("DELETE FROM orders", "SELECT 1 /* ok */"))));
    expect(stderr).toBe("bundle NOT verified:\n  statements.jsonl: its SHA-256 does not match the manifest (edited)\n");
  }, 60_000);

  it("names an edited recording, changed with the system's own tar", async () => {
    const out = join(dir, "unpacked");
    mkdirSync(out);
    expect((await runProcess("tar", ["-xzf", bundlePath, "-C", out])).code).toBe(0);
    const cast = join(out, "recordings", `${seeded.ssh.sessionId}-1.cast`);
    writeFileSync(cast, readFileSync(cast, "utf8").replace("uptime", "uptimf"));
    const names = readTarGz(bundle, 1 << 26).map((e) => e.name);
    const repacked = join(dir, "repacked.tar.gz");
    expect((await runProcess("tar", ["--format=ustar", "-czf", repacked, "-C", out, ...names])).code).toBe(0);
    const stderr = await refused(repacked);
    expect(stderr).toBe(`bundle NOT verified:\n  recordings/${seeded.ssh.sessionId}-1.cast: its SHA-256 does not match the manifest (edited)\n`);
  }, 60_000);

  it("names an edited manifest, a removed file and an added one", async () => {
    const widened = await refused(tampered(bundle, edit("manifest.json", (t) => t.replace('"until": "2026-03-12T00:00:00.000Z"', '"until": "2026-03-13T00:00:00.000Z"'))));
    expect(widened).toBe("bundle NOT verified:\n  manifest.json: its content does not match its digest (edited)\n");
    const removed = await refused(tampered(bundle, (entries) => entries.filter((e) => !e.name.startsWith("recordings/"))));
    expect(removed).toContain(`recordings/${seeded.ssh.sessionId}-1.cast is listed in the manifest but missing from the bundle (removed)`);
    const added = await refused(tampered(bundle, (entries) => [...entries, { name: "extra.jsonl", body: Buffer.from("{}\n") }]));
    expect(added).toContain("extra.jsonl is in the bundle but not in the manifest (added)");
    // A name that an object's prototype has is no way around the list.
    const sneaky = await refused(tampered(bundle, (entries) => [...entries, { name: "toString", body: Buffer.from("x") }]));
    expect(sneaky).toContain("toString is in the bundle but not in the manifest (added)");
    const garbage = join(dir, "garbage.tar.gz");
    writeFileSync(garbage, "not a bundle");
    expect(await refused(garbage)).toContain("the bundle cannot be read: not a gzip-compressed archive");
  }, 60_000);

  it("exports one target: its sessions only, other targets' events as links without content, and still verifies", async () => {
    const file = join(dir, "orders.tar.gz");
    const run = await jitgate(["audit", "export", "--since", "2026-03-10", "--until", "2026-03-12", "--target", "orders-db", "--out", file]);
    expect(run.code).toBe(0);
    const files = new Map(readTarGz(readFileSync(file), 1 << 26).map((e) => [e.name, e.body.toString("utf8")]));
    const sessions = files.get("sessions.jsonl")!.trim().split("\n").map((l) => JSON.parse(l) as { session: { target: string } });
    expect(sessions.map((s) => s.session.target)).toEqual(["orders-db", "orders-db"]);
    expect([...files.keys()].some((n) => n.startsWith("recordings/"))).toBe(false);
    const events = files.get("events.jsonl")!.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const hidden = events.filter((e) => e.omitted === true);
    expect(hidden.length).toBeGreaterThan(0);
    for (const e of hidden) expect(Object.keys(e).sort()).toEqual(["hash", "omitted", "prevHash", "seq"]);
    expect(events.filter((e) => e.omitted !== true).every((e) => e.target === "orders-db")).toBe(true);
    expect(files.get("events.jsonl")).not.toContain("restart nginx");
    expect((await jitgate(["audit", "verify", "--bundle", file])).code).toBe(0);

    // Hiding an orders-db event behind its links is caught even though the links still hold.
    const hide = await refused(tampered(readFileSync(file), edit("events.jsonl", (t) => t.split("\n").map((line) => {
      const e = line ? (JSON.parse(line) as { seq: number; prevHash: string; hash: string; kind?: string }) : undefined;
      return e?.kind === "request.created" ? JSON.stringify({ seq: e.seq, prevHash: e.prevHash, hash: e.hash, omitted: true }) : line;
    }).join("\n"))));
    expect(hide).toMatch(/events\.jsonl: \d+ events without content, but the manifest says \d+ \(edited\)/);
  }, 60_000);

  it("exports and verifies a range with no events at all", async () => {
    const file = join(dir, "empty.tar.gz");
    const run = await jitgate(["audit", "export", "--since", "2020-01-01", "--until", "2020-01-02", "--out", file]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/events none–none, 0 requests, 0 sessions, 0 statements, 0 results, 0 recordings/);
    const verified = await jitgate(["audit", "verify", "--bundle", file]);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain("bundle ok: 2020-01-01T00:00:00.000Z – 2020-01-02T00:00:00.000Z; events none–none");
  }, 60_000);

  it("refuses a range that ends before it starts, and a missing --out", async () => {
    const backwards = await jitgate(["audit", "export", "--since", "2026-03-12", "--until", "2026-03-10", "--out", join(dir, "x.tar.gz")]);
    expect(backwards.code).toBe(2);
    expect(backwards.stderr).toContain("is after --until");
    expect(existsSync(join(dir, "x.tar.gz"))).toBe(false);
    const noOut = await jitgate(["audit", "export", "--since", "2026-03-10", "--until", "2026-03-12"]);
    expect(noOut.code).toBe(1);
    expect(noOut.stderr).toContain("required option '--out <file>' not specified");
  }, 60_000);
});
