import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/infra/logger.js";

/** A logger whose lines are kept in `lines` (JSON, one per entry), for tests that read what was logged. */
export function capturedLogger(level: Parameters<typeof createLogger>[0] = "info"): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: createLogger(level, sink), lines };
}
