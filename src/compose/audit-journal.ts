import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StatementLog, type StatementRecorder } from "../broker/statement-log.js";
import { JournaledStatements } from "../broker/statement-journal.js";
import type { Cleanups } from "../infra/cleanups.js";
import { FileJournal, JournalLockedError } from "../infra/journal.js";
import type { Logger } from "../infra/logger.js";
import type { Core } from "./core.js";

/** How long start-up waits for the database to take what a crash left in the journal. */
const LEFTOVER_SHIP_TIMEOUT_MS = 60_000;

export interface AuditJournal {
  /** What the PostgreSQL proxy records statements through. */
  statements: StatementRecorder;
  journaled: JournaledStatements;
  journal: FileJournal;
}

/**
 * The local write-ahead audit journal (audit.journal): opened, with whatever a crash left behind
 * shipped into `session_statements` before anything else starts, when the PostgreSQL proxy is
 * configured or a journal is there from an earlier run. Its directory defaults to
 * `<dataDir>/journal/<deployment id>`: a journal is only ever shipped into its own deployment's
 * database. It closes after the proxies have drained (registered before them).
 */
export async function startAuditJournal(core: Core, options: { logger: Logger }, cleanups: Cleanups): Promise<AuditJournal | undefined> {
  const { config, storage, onBackgroundError } = core;
  const settings = config.audit.journal;
  const dir = settings.dir ?? join(config.dataDir, "journal", core.deploymentId);
  if (!config.proxy.postgres && !existsSync(dir)) return undefined;
  let journal: FileJournal;
  try {
    journal = FileJournal.open({
      dir,
      fsync: settings.fsync,
      intervalMs: settings.intervalMs,
      maxBytes: settings.maxBytes,
      onError: (error) => onBackgroundError(error, "audit journal"),
    });
  } catch (error) {
    // Without a proxy of its own this gateway only ships leftovers; a live gateway that owns them ships them itself.
    if (!config.proxy.postgres && error instanceof JournalLockedError) return undefined;
    throw error;
  }
  // A journal is only ever shipped into its own deployment's database (a dir named in the
  // configuration may outlive the database it was written for).
  const owner = join(dir, "deployment");
  const recorded = existsSync(owner) ? readFileSync(owner, "utf8").trim() : undefined;
  if (recorded !== undefined && recorded !== core.deploymentId && journal.unshippedBytes > 0) {
    await journal.close();
    throw new Error(
      `the audit journal in ${dir} holds ${journal.unshippedBytes} bytes of records of deployment ${recorded}, but this database is deployment ${core.deploymentId}: start that deployment's gateway to ship them, or move the directory away`,
    );
  }
  if (recorded !== core.deploymentId) writeFileSync(owner, core.deploymentId);
  if (journal.recovered.cutBytes > 0) {
    options.logger.warn({ dir, cutBytes: journal.recovered.cutBytes }, "the audit journal ended in a torn or corrupt record (a crash mid-write); it was cut off");
  }
  const writer = new StatementLog(storage.db, (error) => onBackgroundError(error, "statement outcomes"));
  const journaled = new JournaledStatements(journal, writer, (error, what) => onBackgroundError(error, what));
  cleanups.add("audit journal", async () => {
    await journaled.close();
    // Wholly shipped: the journal left nothing but its owner's note, which goes too.
    if (existsSync(dir) && readdirSync(dir).every((name) => name === "deployment")) rmSync(dir, { recursive: true, force: true });
  });
  if (journal.unshippedBytes > 0) {
    options.logger.info({ dir, bytes: journal.unshippedBytes }, "shipping what the audit journal holds from the last run");
    await journaled.shipAll(LEFTOVER_SHIP_TIMEOUT_MS);
  }
  return { statements: journaled, journaled, journal };
}
