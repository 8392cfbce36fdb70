import { serialize } from "pg-protocol";
import { BackendReader, BackendType, decodeDataRow, decodeErrorFields, decodeRowDescription, type RowField } from "./backend-codec.js";
import { openUpstream, UpstreamError, type UpstreamSession, type UpstreamTarget } from "./upstream.js";

/**
 * A session of the gateway's own on a target, beside the client's: for the catalog look-ups of
 * masking and for ending a client's backend. One statement at a time, text results, parameters
 * sent out of line (extended protocol) so nothing is quoted by hand.
 */
export class UpstreamQueries {
  readonly #reader = new BackendReader(64 * 1024 * 1024);
  #queue: Promise<unknown> = Promise.resolve();
  #waiting:
    | { rows: (string | null)[][]; fields: RowField[] | undefined; error: Error | undefined; resolve: (rows: (string | null)[][]) => void; reject: (error: Error) => void }
    | undefined;
  #closed = false;

  private constructor(readonly session: UpstreamSession) {
    session.socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    const gone = () => {
      this.#closed = true;
      this.#waiting?.reject(new UpstreamError("the gateway's own session on the target closed"));
      this.#waiting = undefined;
    };
    session.socket.on("close", gone);
    session.socket.on("error", gone);
  }

  static async open(target: UpstreamTarget, applicationName: string, timeoutMs = 10_000): Promise<UpstreamQueries> {
    return new UpstreamQueries(await openUpstream(target, { application_name: applicationName }, timeoutMs));
  }

  /** Runs one statement; resolves with its rows as text, rejects with the server's error. */
  query(sql: string, params: (string | null)[] = []): Promise<(string | null)[][]> {
    return this.#exchange([serialize.parse({ text: sql }), serialize.bind({ values: params }), serialize.execute({}), serialize.sync()]).then((r) => r.rows);
  }

  /** The row shape of a statement without running it (Parse and Describe); undefined when it returns no rows. */
  describe(sql: string): Promise<RowField[] | undefined> {
    return this.#exchange([serialize.parse({ text: sql }), serialize.describe({ type: "S", name: "" }), serialize.sync()]).then((r) => r.fields);
  }

  #exchange(messages: Buffer[]): Promise<{ rows: (string | null)[][]; fields: RowField[] | undefined }> {
    const run = this.#queue.then(
      () =>
        new Promise<{ rows: (string | null)[][]; fields: RowField[] | undefined }>((resolve, reject) => {
          if (this.#closed) return reject(new UpstreamError("the gateway's own session on the target is closed"));
          const waiting = {
            rows: [] as (string | null)[][],
            fields: undefined as RowField[] | undefined,
            error: undefined as Error | undefined,
            resolve: () => resolve({ rows: waiting.rows, fields: waiting.fields }),
            reject,
          };
          this.#waiting = waiting;
          this.session.socket.write(Buffer.concat(messages));
        }),
    );
    this.#queue = run.catch(() => {});
    return run;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.session.socket.end(serialize.end());
    this.session.socket.destroy();
  }

  #onData(chunk: Buffer): void {
    try {
      this.#reader.push(chunk, (type, frame) => {
        const waiting = this.#waiting;
        if (!waiting) return;
        if (type === BackendType.RowDescription) waiting.fields = decodeRowDescription(frame);
        else if (type === BackendType.DataRow) waiting.rows.push(decodeDataRow(frame).map((v) => (v === null ? null : v.toString("utf8"))));
        else if (type === BackendType.ErrorResponse) {
          const fields = decodeErrorFields(frame);
          waiting.error = new UpstreamError(fields.M ?? "error", fields.C ?? "XX000");
        } else if (type === BackendType.ReadyForQuery) {
          this.#waiting = undefined;
          if (waiting.error) waiting.reject(waiting.error);
          else waiting.resolve(waiting.rows);
        }
      });
    } catch (error) {
      this.#waiting?.reject(error as Error);
      this.#waiting = undefined;
      this.close();
    }
  }
}
