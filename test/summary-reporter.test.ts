import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..");
const VITEST = join(ROOT, "node_modules", "vitest", "vitest.mjs");
const REPORTER = join(ROOT, "test", "support", "summary-reporter.ts");

let dir: string;
let config: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "jitgate-summary-"));
  config = join(dir, "vitest.config.mjs");
  // Only the fixtures (kept out of the main run by their *.fixture.ts name) and only the reporter
  // under test, so its line is the one this test reads.
  writeFileSync(
    config,
    `export default ${JSON.stringify({
      test: { root: ROOT, include: ["test/fixtures/reporter/*.fixture.ts"], reporters: [REPORTER] },
    })};\n`,
  );
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface ChildRun {
  code: number | null;
  summary: string | undefined;
  output: string;
}

/** Runs a child vitest over one fixture file and reads the reporter's closing line. */
function runFixture(name: string): Promise<ChildRun> {
  // The parent's VITEST_* variables would make the child think it is a worker of this run.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("VITEST")));
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [VITEST, "run", "--config", config, `test/fixtures/reporter/${name}.fixture.ts`],
      { cwd: ROOT, env, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") return reject(error);
        const summary = /^\d+ passed, \d+ failed(?:, \d+ skipped)?$/m.exec(stdout)?.[0];
        resolve({ code: error ? (error.code as number) : 0, summary, output: `${stdout}\n${stderr}` });
      },
    );
  });
}

describe("the closing summary line", () => {
  it.each([
    ["before-all-throws", "0 passed, 3 failed", 1],
    ["nested-before-all-throws", "1 passed, 2 failed", 1],
    ["after-all-throws", "1 passed, 1 failed", 1],
    ["each-hooks-throw", "1 passed, 2 failed, 1 skipped", 1],
    ["all-pass", "1 passed, 0 failed, 1 skipped", 0],
  ])("%s reads '%s' and vitest exits %i", async (fixture, line, exitCode) => {
    const run = await runFixture(fixture);
    expect(run.summary, run.output).toBe(line);
    expect(run.code, run.output).toBe(exitCode);
  });
});
