import type { Reporter, TestModule, TestRunEndReason, TestSuite } from "vitest/node";

/**
 * Ends the run with the plain closing line `N passed, N failed, N skipped` that CI reads in any
 * language, after vitest's own summary.
 *
 * Vitest marks the tests under a failed `beforeAll` as skipped and keeps a failed `beforeAll` or
 * `afterAll` on the suite, not on any test, so counting test states alone can print `0 failed` for a
 * run that exits 1. Here a test that did not run because a hook above it failed counts as failed, and
 * so does every failed hook (and every error while loading a file). A failed `beforeEach` or
 * `afterEach` already fails its test.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<unknown>,
    reason: TestRunEndReason,
  ): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      const suites: Array<TestModule | TestSuite> = [module, ...module.children.allSuites()];
      for (const suite of suites) failed += suite.errors().length;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed += 1;
        else if (state === "failed") failed += 1;
        else if (test.options.mode !== "skip" && test.options.mode !== "todo" && underFailedHook(test.parent)) failed += 1;
        else skipped += 1;
      }
    }
    failed += unhandledErrors.length;
    // Whatever else fails a run (a typecheck error, a coverage threshold) still must not read as green.
    if (reason === "failed" && failed === 0) failed = 1;
    process.stdout.write(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}\n`);
  }
}

/** Whether this suite or one around it has a hook (or its loading) that failed. */
function underFailedHook(suite: TestModule | TestSuite): boolean {
  if (suite.errors().length > 0) return true;
  return suite.type === "suite" ? underFailedHook(suite.parent) : false;
}
