import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../src/config/load.js";
import { DEMO_SOURCE, DEMO_USERS, demoConfigYaml } from "../src/demo/demo-config.js";
import { DEMO_ORDER_COUNT, startDemoTarget, type DemoTarget } from "../src/demo/demo-target.js";
import { startupBanner } from "../src/main.js";
import { startDemoGateway } from "./support/browser.js";

const run = promisify(execFile);

/** ISO/IEC 7812 check digit (Luhn). */
function luhn(number: string): boolean {
  const digits = number.replace(/\D/g, "").split("").reverse().map(Number);
  return digits.reduce((sum, d, i) => sum + (i % 2 === 1 ? (d * 2 > 9 ? d * 2 - 9 : d * 2) : d), 0) % 10 === 0;
}

describe("the demo target (PGlite over the wire)", () => {
  let target: DemoTarget;

  beforeAll(async () => {
    target = await startDemoTarget({ listen: "127.0.0.1:0" });
  });

  afterAll(async () => {
    await target?.close();
    await target?.close(); // twice is fine
  });

  it("is seeded with orders holding emails and Luhn-valid test card numbers, and answers psql directly", async () => {
    expect(target.address.port).toBeGreaterThan(0);
    expect(target.upstreamUrl).toBe(`postgres://demo:demo@127.0.0.1:${target.address.port}/postgres`);
    const { stdout } = await run("psql", [target.upstreamUrl, "-X", "-A", "-t", "-F", "|", "-c", "SELECT id, customer_email, card_number, amount, status FROM orders ORDER BY id"], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PGCONNECT_TIMEOUT: "5" },
    });
    const rows = stdout.trim().split("\n").map((line) => line.split("|"));
    expect(rows).toHaveLength(DEMO_ORDER_COUNT);
    expect(rows[0]).toEqual(["1", "ada.customer@example.com", "4111 1111 1111 1111", "12.50", "paid"]);
    for (const [, email, card] of rows) {
      expect(email).toMatch(/^[a-z]+\.(customer|buyer)@example\.com$/);
      expect(luhn(card!)).toBe(true);
    }
    expect(new Set(rows.map((r) => r[4]))).toEqual(new Set(["paid", "shipped", "stuck", "refunded"]));
  });

  it("serves several connections at once, one query at a time, and keeps a transaction to its connection", async () => {
    const a = new pg.Client({ connectionString: target.upstreamUrl });
    const b = new pg.Client({ connectionString: target.upstreamUrl });
    await Promise.all([a.connect(), b.connect()]);
    try {
      await a.query("BEGIN");
      await a.query("UPDATE orders SET status = 'held' WHERE id = 1");
      // b waits for a's transaction (PGlite is one backend), then sees its outcome.
      const seenByB = b.query("SELECT status FROM orders WHERE id = 1");
      await a.query("ROLLBACK");
      expect((await seenByB).rows[0]).toEqual({ status: "paid" });
      const [x, y] = await Promise.all([a.query("SELECT count(*)::int AS n FROM orders"), b.query("SELECT count(*)::int AS n FROM orders")]);
      expect(x.rows[0].n).toBe(DEMO_ORDER_COUNT);
      expect(y.rows[0].n).toBe(DEMO_ORDER_COUNT);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it("refuses to start on an address that is already taken", async () => {
    await expect(startDemoTarget({ listen: `127.0.0.1:${target.address.port}` })).rejects.toThrow(/EADDRINUSE/);
  });
});

describe("the demo configuration", () => {
  it("turns on the console with dev and lead, listens on 127.0.0.1 only, and masks and reviews on the demo target", () => {
    const config = parseConfig(demoConfigYaml(), DEMO_SOURCE, {});
    expect(config.demo).toEqual({ enabled: true, postgresListen: "127.0.0.1:15499" });
    expect(config.console.enabled).toBe(true);
    expect(config.console.users).toEqual(DEMO_USERS);
    expect(config.http.listen).toBe("127.0.0.1:3000");
    expect(config.proxy.postgres?.listen).toBe("127.0.0.1:15432");
    expect(config.database).toBeUndefined(); // embedded PGlite
    const [target] = config.targets;
    expect(config.targets).toHaveLength(1);
    expect(target).toMatchObject({
      name: "demo",
      kind: "postgres",
      upstream: "postgres://demo:demo@127.0.0.1:15499/postgres",
      approvers: ["lead@demo.jitgate.local"],
      commands: {
        block: ["drop-database", "alter-system", "copy-program", "server-files", "replication"],
        review: ["delete-without-where", "update-without-where", "ddl", "truncate", "grant-revoke", "set-role", "large-objects", "remote-connection"],
        unverifiable: "review",
      },
      mask: [{ detect: "email" }, { detect: "credit-card" }],
    });
  });

  it("takes overrides for every address, so tests and a second copy can run next to each other", () => {
    const config = parseConfig(
      demoConfigYaml({ httpListen: "127.0.0.1:3999", proxyListen: "127.0.0.1:25432", targetListen: "127.0.0.1:25499", dataDir: "/tmp/x y" }),
      DEMO_SOURCE,
      {},
    );
    expect(config.http.listen).toBe("127.0.0.1:3999");
    expect(config.proxy.postgres?.listen).toBe("127.0.0.1:25432");
    expect(config.demo.postgresListen).toBe("127.0.0.1:25499");
    expect(config.targets[0]?.kind === "postgres" && config.targets[0].upstream).toBe("postgres://demo:demo@127.0.0.1:25499/postgres");
    expect(config.dataDir).toBe("/tmp/x y");
  });

  it("refuses console.enabled outside demo mode without oidc:", () => {
    let error: unknown;
    try {
      parseConfig("console: { enabled: true }", "jitgate.yaml", {});
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      "console.enabled: needs oidc: outside demo mode (people log in to the console with OIDC)",
      "console.allow: is required outside demo mode: say whose sign-ins may use the console and the audit pages, like allow: { domains: [example.com] } (anyone else with an account at the provider is refused)",
    ]);
    expect(() => parseConfig("console: { enabled: true }\ndemo: { enabled: true }\nhttp: { listen: 127.0.0.1:3000 }", "jitgate.yaml", {})).not.toThrow();
  });

  it("refuses demo mode on an HTTP address other machines can reach (the demo has no login)", () => {
    for (const listen of ["0.0.0.0:3000", "10.1.2.3:3000", "[::]:3000"]) {
      let error: unknown;
      try {
        parseConfig(`demo: { enabled: true }\nhttp: { listen: "${listen}" }`, "jitgate.yaml", {});
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems).toEqual([
        `http.listen: must be a loopback address (127.0.0.1:<port> or [::1]:<port>) in demo mode, where anyone who reaches the console can act as anyone (got "${listen}")`,
      ]);
    }
    expect(() => parseConfig(`demo: { enabled: true, postgresListen: "0.0.0.0:15499" }\nhttp: { listen: "127.0.0.1:3000" }`, "jitgate.yaml", {})).toThrow(
      'demo.postgresListen: must be a loopback address (127.0.0.1:<port> or [::1]:<port>): the demo target accepts any password (got "0.0.0.0:15499")',
    );
    for (const listen of ["127.0.0.1:3000", "[::1]:3000", "localhost:3000"]) {
      expect(parseConfig(`demo: { enabled: true }\nhttp: { listen: "${listen}" }`, "jitgate.yaml", {}).http.listen).toBe(listen);
    }
  });

  it("is what `jitgate config check` finds in a directory without jitgate.yaml", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jitgate-demo-"));
    try {
      const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done, fail) => {
        const tsx = pathToFileURL(resolve("node_modules/tsx/dist/loader.mjs")).href;
        const env: NodeJS.ProcessEnv = { ...process.env };
        delete env.JITGATE_CONFIG;
        const child = spawn(process.execPath, ["--import", tsx, resolve("src/cli.ts"), "config", "check"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
        child.once("error", fail);
        child.once("close", (code) => done({ code, stdout, stderr }));
      });
      expect(result.stderr).toBe("");
      expect(result.stdout.trim()).toBe("demo mode (no jitgate.yaml): ok (1 target)");
      expect(result.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a gateway in demo mode", () => {
  it("starts the demo target and the console, and its banner says exactly what to do", async () => {
    const demo = await startDemoGateway("demo_banner");
    try {
      // The demo target is up and seeded: it answers on its upstream URL.
      const target = new pg.Client({ connectionString: demo.gateway.demoTarget!.upstreamUrl });
      await target.connect();
      try {
        expect((await target.query("SELECT count(*)::int AS n FROM orders")).rows).toEqual([{ n: DEMO_ORDER_COUNT }]);
      } finally {
        await target.end();
      }
      expect(demo.gateway.console?.auth.kind).toBe("demo");
      const banner = startupBanner(demo.gateway, DEMO_SOURCE);
      const port = demo.gateway.httpAddress.port;
      expect(banner).toContain(`jitgate is running (configuration: ${DEMO_SOURCE})`);
      expect(banner).toContain(`console     http://127.0.0.1:${port}/console  (demo: people pick themselves, no login; channel #access-requests)`);
      expect(banner).toContain(`demo target PGlite at 127.0.0.1:${demo.gateway.demoTarget!.address.port} (table orders), reached through target demo`);
      expect(banner).toContain(`1. open http://127.0.0.1:${port}/console`);
      expect(banner).toContain("2. pick dev and type in the command box:  request demo 30m trying jitgate");
      expect(banner).toContain("3. switch to lead (top right) and click Approve on the request");
      expect(banner).toContain("4. switch back to dev: copy the psql line from your direct messages and run");
      expect(banner).toContain("SELECT * FROM orders LIMIT 5;");
      expect(banner).toContain("DELETE FROM orders;  (held: approve it as lead in the request's thread");
      expect(banner).toContain(`6. see http://127.0.0.1:${port}/audit`);
      expect(banner).not.toContain("not configured:");
    } finally {
      await demo.close();
    }
  });
});
