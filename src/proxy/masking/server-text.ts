import type { Masking } from "./masker.js";
import { PLAIN_OPERATORS, type StatementShape } from "./statement-shape.js";

/**
 * Masking of the server's text that is not a result row (issue 13, must 4): ErrorResponse and
 * NoticeResponse fields, NotificationResponse payloads, ParameterStatus values set during the
 * session, and COPY OUT data. Formats:
 * https://www.postgresql.org/docs/current/protocol-message-formats.html and
 * https://www.postgresql.org/docs/current/protocol-error-fields.html.
 *
 * On a target with masking rules every such text goes through the detectors. On a target with
 * column rules, where a value of a masked column may sit in any text the server writes (an error
 * quoting the value it could not cast, a check violation's "Failing row contains (…)", a NOTICE or
 * exception raised by procedural code, a pg_notify payload, application_name set by set_config),
 * that text is withheld unless it provably cannot carry one:
 * - errors and notices keep their own text only when their SQLSTATE class is one whose messages
 *   name objects and settings rather than quote data (SAFE_CLASSES), and the statement that raised
 *   them neither touches a masked column nor runs code of its own (no DO, CALL, function other
 *   than a few common builtins, FETCH…). Otherwise the message becomes a generic one that keeps
 *   the SQLSTATE, and detail, hint, context and internal query are dropped;
 * - notification payloads are replaced with `***` (the sending statement, possibly in another
 *   session, cannot be known);
 * - reported parameters other than the server's fixed-format ones are replaced with `***`.
 */

/**
 * SQLSTATE classes (https://www.postgresql.org/docs/current/errcodes-appendix.html) whose
 * messages the server words from identifiers, settings and the statement's own text, never from
 * table data: connection, feature not supported, invalid transaction state, authorization, catalog
 * and schema names, syntax and access rules, resources, prerequisite state, operator intervention,
 * system errors.
 */
const SAFE_CLASSES = new Set(["08", "0A", "0B", "25", "28", "2D", "3B", "3D", "3F", "42", "53", "54", "55", "57", "58"]);

/** Functions whose error messages cannot carry a value the statement did not name (PostgreSQL's own). */
const PLAIN_FUNCTIONS = new Set(["count", "sum", "avg", "min", "max", "now", "lower", "upper", "length", "coalesce", "greatest", "least", "abs", "round", "date_trunc", "pg_sleep", "version", "current_database", "pg_backend_pid"]);

/** Parameters whose reported values have a fixed form set by the server, not free text. */
const FIXED_PARAMETERS = new Set([
  "server_version",
  "server_encoding",
  "client_encoding",
  "DateStyle",
  "IntervalStyle",
  "TimeZone",
  "integer_datetimes",
  "standard_conforming_strings",
  "is_superuser",
  "session_authorization",
  "in_hot_standby",
  "default_transaction_read_only",
  "scram_iterations",
]);

/** Error fields whose text is the server's description of what happened (may quote values). */
const TEXT_FIELDS = new Set(["M", "D", "H", "W", "q"]);
const DROPPED_WHEN_WITHHELD = new Set(["D", "H", "W", "q", "p"]);

const MASKED = Buffer.from("***");

export class ServerTextMasking {
  constructor(private readonly masking: Masking) {}

  /** Whether errors and notices of a statement of this shape keep their own text on a target with column rules. */
  static speaksPlainly(shape: StatementShape | undefined): boolean {
    if (!shape || shape.opaque || shape.namesMaskedColumn || shape.wholeRow) return false;
    return shape.functions.every((f) => f.schema === undefined && PLAIN_FUNCTIONS.has(f.name)) && shape.operators.every((o) => PLAIN_OPERATORS.has(o));
  }

  /** An ErrorResponse or NoticeResponse to forward; `plain` from `speaksPlainly` for the statement that raised it. */
  errorOrNotice(frame: Buffer, plain: boolean): Buffer {
    const fields: [number, Buffer][] = [];
    let offset = 5;
    while (offset < frame.length && frame[offset] !== 0) {
      const end = frame.indexOf(0, offset + 1);
      if (end < 0) break;
      fields.push([frame[offset]!, frame.subarray(offset + 1, end)]);
      offset = end + 1;
    }
    const code = fields.find(([f]) => f === 0x43)?.[1].toString("latin1") ?? "XX000";
    const withhold = this.masking.hasColumnRules && !(plain && SAFE_CLASSES.has(code.slice(0, 2)));
    let changed = false;
    const out: [number, Buffer][] = [];
    for (const [field, value] of fields) {
      const letter = String.fromCharCode(field);
      if (withhold && DROPPED_WHEN_WITHHELD.has(letter)) {
        changed = true;
        continue;
      }
      if (withhold && letter === "M") {
        changed = true;
        out.push([field, Buffer.from(`jitgate: the server's message is withheld: it may carry values of masked columns (SQLSTATE ${code})`)]);
        continue;
      }
      const redacted = TEXT_FIELDS.has(letter) ? this.masking.detectors?.mask(value) : undefined;
      if (redacted !== undefined) changed = true;
      out.push([field, redacted ?? value]);
    }
    if (!changed) return frame;
    const body = Buffer.concat([...out.flatMap(([field, value]) => [Buffer.from([field]), value, Buffer.from([0])]), Buffer.from([0])]);
    return frameOf(frame[0]!, body);
  }

  /** NotificationResponse: int32 process id, channel, payload. */
  notification(frame: Buffer): Buffer {
    const channelEnd = frame.indexOf(0, 9);
    const payload = frame.subarray(channelEnd + 1, frame.length - 1);
    if (payload.length === 0) return frame;
    const replaced = this.masking.hasColumnRules ? MASKED : this.masking.detectors?.mask(payload);
    if (replaced === undefined) return frame;
    return frameOf(frame[0]!, Buffer.concat([frame.subarray(5, channelEnd + 1), replaced, Buffer.from([0])]));
  }

  /** ParameterStatus after start-up: name, value. */
  parameterStatus(frame: Buffer): Buffer {
    const nameEnd = frame.indexOf(0, 5);
    const name = frame.toString("utf8", 5, nameEnd);
    if (FIXED_PARAMETERS.has(name)) return frame;
    const value = frame.subarray(nameEnd + 1, frame.length - 1);
    const replaced = this.masking.hasColumnRules ? (value.length > 0 ? MASKED : undefined) : this.masking.detectors?.mask(value);
    if (replaced === undefined) return frame;
    return frameOf(frame[0]!, Buffer.concat([frame.subarray(5, nameEnd + 1), replaced, Buffer.from([0])]));
  }

  /** CopyData from the server (COPY OUT): the detectors over the row's text. */
  copyData(frame: Buffer): Buffer {
    const replaced = this.masking.detectors?.mask(frame.subarray(5));
    return replaced === undefined ? frame : frameOf(frame[0]!, replaced);
  }
}

function frameOf(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}
