import { createHash } from "node:crypto";
import { and, asc, between, desc, eq, gte, inArray, isNull, lte, max, min, or, type SQL } from "drizzle-orm";
import type { Executor } from "../db/client.js";
import { accessRequests, auditEvents, grants, sessions, sessionSealKeys, statementResults } from "../db/schema.js";
import { readTarGz, TarError, writeTarGz } from "../infra/tar.js";
import { auditHash, canonicalJson, type AuditRow } from "./audit.js";
import { requestTimeline, sessionDetail } from "./audit-queries.js";
import { recordingsOf } from "./recordings.js";
import { decodeRows, resultsOf } from "./results.js";

/**
 * An evidence bundle: what an auditor asks for, in one .tar.gz that verifies on its own.
 *
 * - `events.jsonl`: the audit chain's events from the first to the last one in the range, every one
 *   of them, so each link (`prevHash` → the previous `hash`) can be checked; with `--target`, the
 *   events of other targets keep only `seq`, `prevHash` and `hash` (`omitted: true`): the chain
 *   still links, their content stays out.
 * - `requests.jsonl`, `sessions.jsonl`, `statements.jsonl`, `held.jsonl`, `recordings.jsonl`: the
 *   sessions that overlap the range and the requests behind them or made in it; each statement of
 *   those sessions; their held statements; their recorded channels, whose asciicast v2 text is in
 *   `recordings/<session>-<channel>.cast`. `results.jsonl`: each statement's recorded result as the
 *   client received it (masked rows, the caps' cut), with its sealed originals as ciphertext only
 *   (base64) and the id of the seal key that wraps the session's data key: never a key.
 * - `manifest.json`: the range, the chain's first `prevHash` and last `hash` in the bundle, the
 *   chain's head at export time, each file's SHA-256, and the manifest's own digest.
 *
 * The bundle proves itself consistent (no event, line, file or manifest field changed without
 * breaking a hash); that it is the gateway's own is proven by comparing its hashes with the chain
 * (the export is itself an `audit.exported` event carrying the manifest's digest).
 */

export const BUNDLE_FORMAT = "jitgate-evidence/1";
/** What `verify` unpacks at most (uncompressed). */
export const MAX_BUNDLE_BYTES = 2 * 1024 ** 3;
const STATEMENT_PAGE = 1000;

export interface EvidenceRange {
  since: Date;
  until: Date;
  target?: string | undefined;
}

export interface FileDigest {
  sha256: string;
  bytes: number;
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  exportedAt: string;
  range: { since: string; until: string; target: string | null };
  chain: {
    /** The first and last event in `events.jsonl` (null when the range holds none). */
    firstSeq: number | null;
    lastSeq: number | null;
    /** The hash the first event links to: the one before the range (or the genesis hash). */
    firstPrevHash: string | null;
    lastHash: string | null;
    /** The chain's last event when the bundle was made: compare with `jitgate audit verify`. */
    head: { seq: number; hash: string } | null;
  };
  counts: Record<string, number>;
  files: Record<string, FileDigest>;
  /** SHA-256 of the canonical JSON of every other field of this manifest. */
  manifestDigest: string;
}

/** An event as the bundle holds it: whole, or (another target's, with `--target`) only its links. */
export type BundleEvent =
  | (Omit<AuditRow, "at"> & { at: string })
  | { seq: number; prevHash: string; hash: string; omitted: true };

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");
const jsonLines = (rows: readonly unknown[]) => Buffer.from(rows.map((row) => `${JSON.stringify(row)}\n`).join(""), "utf8");

export function manifestDigestOf(manifest: Omit<BundleManifest, "manifestDigest"> | BundleManifest): string {
  const { manifestDigest: _ignored, ...rest } = manifest as BundleManifest;
  return sha256(canonicalJson(rest));
}

/** The chain's last event now. */
export async function chainHead(db: Executor): Promise<{ seq: number; hash: string } | null> {
  const [head] = await db.select({ seq: auditEvents.seq, hash: auditEvents.hash }).from(auditEvents).orderBy(desc(auditEvents.seq)).limit(1);
  return head ?? null;
}

/** Every statement of a session, page by page through the audit pages' own reading. */
async function allStatements(db: Executor, sessionId: string) {
  const statements = [];
  let afterSeq: number | undefined;
  for (;;) {
    const page = await sessionDetail(db, sessionId, { limit: STATEMENT_PAGE, ...(afterSeq !== undefined ? { afterSeq } : {}) });
    if (!page) break;
    statements.push(...page.statements);
    if (!page.moreStatements || page.statements.length === 0) return { statements, held: page.held, detail: page };
    afterSeq = page.statements[page.statements.length - 1]!.seq;
  }
  return undefined;
}

/** Reads what the range holds and packs it as a bundle (.tar.gz bytes) with its manifest. */
export async function buildEvidenceBundle(db: Executor, range: EvidenceRange, now: Date): Promise<{ bundle: Buffer; manifest: BundleManifest }> {
  const head = await chainHead(db);

  // The chain segment: from the first to the last event whose time is in the range, with everything between.
  const [bounds] = await db
    .select({ first: min(auditEvents.seq), last: max(auditEvents.seq) })
    .from(auditEvents)
    .where(and(gte(auditEvents.at, range.since), lte(auditEvents.at, range.until), range.target ? eq(auditEvents.target, range.target) : undefined));
  const first = bounds?.first == null ? null : Number(bounds.first);
  const last = bounds?.last == null ? null : Number(bounds.last);
  const rows = first !== null && last !== null ? await db.select().from(auditEvents).where(between(auditEvents.seq, first, last)).orderBy(asc(auditEvents.seq)) : [];
  const events: BundleEvent[] = rows.map((row) =>
    range.target && row.target !== range.target
      ? { seq: row.seq, prevHash: row.prevHash, hash: row.hash, omitted: true as const }
      : { ...row, at: row.at.toISOString() },
  );

  // Sessions that overlap the range.
  const overlaps: SQL[] = [lte(sessions.startedAt, range.until), or(isNull(sessions.endedAt), gte(sessions.endedAt, range.since))!];
  if (range.target) overlaps.push(eq(sessions.target, range.target));
  const sessionRows = await db.select().from(sessions).where(and(...overlaps)).orderBy(asc(sessions.startedAt), asc(sessions.id));

  // Requests made in the range, and those behind the sessions.
  const grantIds = [...new Set(sessionRows.map((s) => s.grantId))];
  const behind = grantIds.length > 0 ? await db.select({ requestId: grants.requestId }).from(grants).where(inArray(grants.id, grantIds)) : [];
  const made = await db
    .select({ id: accessRequests.id })
    .from(accessRequests)
    .where(and(gte(accessRequests.createdAt, range.since), lte(accessRequests.createdAt, range.until), range.target ? eq(accessRequests.target, range.target) : undefined));
  const requestIds = [...new Set([...made.map((r) => r.id), ...behind.map((r) => r.requestId)])].sort();
  const requests = [];
  for (const id of requestIds) {
    const timeline = await requestTimeline(db, id);
    if (!timeline) continue;
    requests.push({ request: timeline.request, requester: timeline.requester, grant: timeline.grant ?? null, decisions: timeline.decisions });
  }

  const sessionLines = [];
  const statementLines = [];
  const heldLines = [];
  const recordingLines = [];
  const resultLines = [];
  const files: { name: string; body: Buffer }[] = [];
  for (const session of sessionRows) {
    const read = await allStatements(db, session.id);
    sessionLines.push({ session, person: read?.detail.person ?? null, requestId: read?.detail.requestId ?? null });
    statementLines.push(...(read?.statements ?? []));
    heldLines.push(...(read?.held ?? []));
    const [sealKey] = await db.select({ keyId: sessionSealKeys.keyId }).from(sessionSealKeys).where(eq(sessionSealKeys.sessionId, session.id));
    for (const result of await db.select().from(statementResults).where(eq(statementResults.sessionId, session.id)).orderBy(asc(statementResults.seq))) {
      resultLines.push({
        sessionId: result.sessionId,
        seq: result.seq,
        columns: result.columns,
        rows: decodeRows(result.data),
        rowsKept: result.rowsKept,
        rowsTotal: result.rowsTotal,
        cut: result.cut,
        sealed: result.sealed,
        sealKeyId: result.sealed ? (sealKey?.keyId ?? null) : null,
      });
    }
    for (const recording of await recordingsOf(db, session.id)) {
      const file = `recordings/${session.id}-${recording.channel}.cast`;
      const { cast, ...info } = recording;
      recordingLines.push({ ...info, file });
      files.push({ name: file, body: Buffer.from(cast, "utf8") });
    }
  }

  const contents: { name: string; body: Buffer }[] = [
    { name: "events.jsonl", body: jsonLines(events) },
    { name: "requests.jsonl", body: jsonLines(requests) },
    { name: "sessions.jsonl", body: jsonLines(sessionLines) },
    { name: "statements.jsonl", body: jsonLines(statementLines) },
    { name: "held.jsonl", body: jsonLines(heldLines) },
    { name: "recordings.jsonl", body: jsonLines(recordingLines) },
    { name: "results.jsonl", body: jsonLines(resultLines) },
    ...files,
  ];
  const unsigned: Omit<BundleManifest, "manifestDigest"> = {
    format: BUNDLE_FORMAT,
    exportedAt: now.toISOString(),
    range: { since: range.since.toISOString(), until: range.until.toISOString(), target: range.target ?? null },
    chain: {
      firstSeq: rows[0]?.seq ?? null,
      lastSeq: rows[rows.length - 1]?.seq ?? null,
      firstPrevHash: rows[0]?.prevHash ?? null,
      lastHash: rows[rows.length - 1]?.hash ?? null,
      head,
    },
    counts: {
      events: events.filter((e) => !("omitted" in e)).length,
      omittedEvents: events.filter((e) => "omitted" in e).length,
      requests: requests.length,
      sessions: sessionLines.length,
      statements: statementLines.length,
      held: heldLines.length,
      recordings: recordingLines.length,
      results: resultLines.length,
    },
    files: Object.fromEntries(contents.map((c) => [c.name, { sha256: sha256(c.body), bytes: c.body.length }])),
  };
  const manifest: BundleManifest = { ...unsigned, manifestDigest: manifestDigestOf(unsigned) };
  const bundle = writeTarGz([{ name: "manifest.json", body: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, "utf8") }, ...contents], now);
  return { bundle, manifest };
}

export type BundleVerdict =
  | { ok: true; manifest: BundleManifest }
  | { ok: false; problems: string[]; manifest?: BundleManifest };

/** Reads a JSON-lines file; a line that is not JSON is a problem named by file and line. */
function parseLines(name: string, body: Buffer, problems: string[]): unknown[] {
  const text = body.toString("utf8");
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  return lines.map((line, i) => {
    try {
      return JSON.parse(line) as unknown;
    } catch {
      problems.push(`${name} line ${i + 1} is not JSON (edited)`);
      return undefined;
    }
  });
}

/**
 * Checks a bundle on its own: the manifest's digest; every event's hash and every link of the chain
 * inside it (the first link to the manifest's `firstPrevHash`, the last hash to its `lastHash`); each
 * file against its SHA-256 in the manifest; no file missing or added. Names every problem found.
 */
export function verifyEvidenceBundle(archive: Buffer): BundleVerdict {
  let entries;
  try {
    entries = readTarGz(archive, MAX_BUNDLE_BYTES);
  } catch (error) {
    if (error instanceof TarError) return { ok: false, problems: [`the bundle cannot be read: ${error.message}`] };
    throw error;
  }
  const byName = new Map(entries.map((e) => [e.name, e.body]));
  const manifestBody = byName.get("manifest.json");
  if (!manifestBody) return { ok: false, problems: ["manifest.json is missing from the bundle"] };
  let manifest: BundleManifest;
  try {
    manifest = JSON.parse(manifestBody.toString("utf8")) as BundleManifest;
  } catch {
    return { ok: false, problems: ["manifest.json is not JSON (edited)"] };
  }
  if (typeof manifest !== "object" || manifest === null || manifest.format !== BUNDLE_FORMAT || typeof manifest.files !== "object" || manifest.files === null || typeof manifest.chain !== "object" || manifest.chain === null) {
    return { ok: false, problems: [`manifest.json is not a ${BUNDLE_FORMAT} manifest`] };
  }
  const problems: string[] = [];
  if (manifestDigestOf(manifest) !== manifest.manifestDigest) problems.push("manifest.json: its content does not match its digest (edited)");

  const eventsBody = byName.get("events.jsonl");
  if (eventsBody) {
    const events = parseLines("events.jsonl", eventsBody, problems) as (BundleEvent | undefined)[];
    problems.push(...chainProblems(events, manifest.chain));
    // An event stood in for by its links alone must be another target's, in a bundle of one target.
    const omitted = events.filter((e) => e !== undefined && typeof e === "object" && "omitted" in e).length;
    if (omitted !== (manifest.range?.target ? manifest.counts?.omittedEvents : 0)) {
      problems.push(`events.jsonl: ${omitted} event${omitted === 1 ? "" : "s"} without content, but the manifest says ${manifest.range?.target ? String(manifest.counts?.omittedEvents) : "none (no --target)"} (edited)`);
    }
  }
  for (const [name, digest] of Object.entries(manifest.files)) {
    const body = byName.get(name);
    if (!body) problems.push(`${name} is listed in the manifest but missing from the bundle (removed)`);
    else if (sha256(body) !== digest?.sha256 || body.length !== digest.bytes) problems.push(`${name}: its SHA-256 does not match the manifest (edited)`);
  }
  for (const name of byName.keys()) {
    if (name !== "manifest.json" && !Object.hasOwn(manifest.files, name)) problems.push(`${name} is in the bundle but not in the manifest (added)`);
  }

  return problems.length === 0 ? { ok: true, manifest } : { ok: false, problems, manifest };
}

/** Each event's own hash and its link to the one before, from the manifest's first link to its last hash. */
function chainProblems(events: (BundleEvent | undefined)[], chain: BundleManifest["chain"]): string[] {
  const problems: string[] = [];
  if (events.length === 0) {
    if (chain.firstSeq !== null || chain.lastSeq !== null) problems.push(`events.jsonl holds no event, but the manifest says events ${chain.firstSeq}–${chain.lastSeq} (removed)`);
    return problems;
  }
  let previous: { seq: number; hash: string } | undefined;
  for (const [index, event] of events.entries()) {
    if (!event || typeof event !== "object" || typeof event.seq !== "number" || typeof event.hash !== "string" || typeof event.prevHash !== "string") {
      problems.push(`events.jsonl line ${index + 1} is not an audit event (edited)`);
      return problems;
    }
    const expectedSeq = previous ? previous.seq + 1 : chain.firstSeq;
    if (event.seq !== expectedSeq) {
      problems.push(previous ? `event ${previous.seq + 1} is missing (event ${event.seq} follows event ${previous.seq}) (removed)` : `the first event is ${event.seq}, but the manifest says ${String(chain.firstSeq)} (removed)`);
      return problems;
    }
    const linksTo = previous ? previous.hash : chain.firstPrevHash;
    if (event.prevHash !== linksTo) problems.push(`event ${event.seq}: its prevHash does not match the hash of ${previous ? `event ${previous.seq}` : "the event before the range stated in the manifest"}`);
    if (!("omitted" in event)) {
      const at = new Date(event.at);
      if (Number.isNaN(at.getTime()) || auditHash({ ...event, at }) !== event.hash) problems.push(`event ${event.seq}: its content does not match its hash (edited)`);
    }
    previous = { seq: event.seq, hash: event.hash };
  }
  if (previous && previous.seq !== chain.lastSeq) problems.push(`the last event is ${previous.seq}, but the manifest says ${String(chain.lastSeq)} (removed)`);
  else if (previous && previous.hash !== chain.lastHash) problems.push(`event ${previous.seq}: its hash is not the manifest's last hash`);
  return problems;
}

/** A session whole, for `jitgate audit show`: its facts, every statement, held statements, events, recordings. */
export async function sessionEvidence(db: Executor, sessionId: string) {
  const read = await allStatements(db, sessionId);
  if (!read) return undefined;
  const { detail } = read;
  const [grant] = await db.select().from(grants).where(eq(grants.id, detail.session.grantId));
  const [request] = detail.requestId ? await db.select().from(accessRequests).where(eq(accessRequests.id, detail.requestId)) : [];
  const results = await resultsOf(db, sessionId);
  return { ...detail, statements: read.statements, results, grant: grant ?? null, request: request ?? null };
}
export type SessionEvidence = NonNullable<Awaited<ReturnType<typeof sessionEvidence>>>;
