import { spawn } from "node:child_process";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ARTIFACTS, startDemoGateway, startWithChromium, type DemoGateway } from "./support/browser.js";

/**
 * The demo as a person goes through it, in a real browser (playwright-core driving Debian's
 * chromium) against a real gateway in demo mode: request as dev, approve as lead, the connection
 * line in dev's DM, real psql through the proxy into the demo target, the held DELETE approved in
 * the thread, and the session in the audit pages. Screenshots of each step go to test/artifacts/.
 */

interface Psql {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs psql with the connection line as given in the DM; resolves when it exits. */
function psql(uri: string, sql: string): Promise<Psql> {
  return new Promise((resolve, reject) => {
    const child = spawn("psql", [uri, "-X", "-v", "ON_ERROR_STOP=1", "-c", sql], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PGCONNECT_TIMEOUT: "10" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("the demo, end to end in a browser", () => {
  let demo: DemoGateway;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const problems: string[] = [];

  beforeAll(async () => {
    ({ server: demo, browser } = await startWithChromium(() => startDemoGateway("e2e_console")));
  }, 60_000);

  afterAll(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await browser?.close();
    await demo?.close();
  });

  /** A browser window of its own (own cookies) where `who` picked themselves on the demo picker. */
  async function personAt(who: "Dana Developer" | "Lee Lead", viewport = { width: 1280, height: 800 }): Promise<Page> {
    const context = await browser.newContext({ viewport });
    contexts.push(context);
    const page = await context.newPage();
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("console", (message) => {
      // Failed loads are reported by URL below.
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) problems.push(`console: ${message.text()}`);
    });
    page.on("response", (response) => {
      if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`);
    });
    await page.goto(`${demo.base}/console`);
    expect(new URL(page.url()).pathname).toBe("/console/login");
    await page.getByRole("button", { name: new RegExp(who) }).click();
    await page.waitForURL(`${demo.base}/console`);
    expect(await page.locator("header .viewer").innerText()).toContain(who);
    return page;
  }

  const shot = (page: Page, name: string) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });

  it("request → approve → psql with the DM's line → the held DELETE approved in the thread → the audit pages", async () => {
    const dev = await personAt("Dana Developer");
    const lead = await personAt("Lee Lead");
    try {
      // 1. dev asks, in the command box; the answer is a note only dev sees.
      await dev.getByRole("textbox", { name: /Command/ }).fill("request demo 30m trying jitgate");
      await dev.getByRole("textbox", { name: /Command/ }).press("Enter");
      await dev.locator("#live-notes").getByText(/Request req_\w+ sent: demo for 30m/).waitFor();
      expect(await dev.getByRole("textbox", { name: /Command/ }).inputValue()).toBe(""); // cleared, focus kept
      expect(await dev.evaluate("document.activeElement && document.activeElement.id")).toBe("command-text");
      await dev.locator("#live-channel").getByText("Access request: demo").waitFor();
      await shot(dev, "console-1-dev-requested");

      // 2. lead's page updates by itself (server-sent events), and lead approves in the channel.
      const request = lead.locator("#live-channel li.thread").filter({ hasText: "Access request: demo" });
      await request.getByText("Pending: needs 1 approval").waitFor();
      await request.getByRole("button", { name: "Approve" }).click();
      await request.getByText(/Live, expires/).waitFor();
      await request.getByText(/Approved by Lee Lead \(1 of 1\)/).first().waitFor();
      await shot(lead, "console-2-lead-approved");

      // 3. dev's DM holds the connection line.
      const dm = dev.locator("#live-dms article").filter({ hasText: "Access to demo approved" });
      await dm.waitFor();
      const line = (await dm.locator("pre.code").innerText()).trim();
      expect(line).toMatch(/^postgres:\/\/dev%40demo\.jitgate\.local:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+\/demo\?sslmode=disable$/);
      await dm.scrollIntoViewIfNeeded();
      await shot(dev, "console-3-dev-dm");

      // 4. psql with that line, through the proxy into the demo target: values come back masked.
      const select = await psql(line, "SELECT id, customer_email, card_number FROM orders ORDER BY id LIMIT 5");
      expect(select.stderr).toBe("");
      expect(select.code).toBe(0);
      expect(select.stdout).toContain("a***@example.com");
      expect(select.stdout).toContain("****-****-****-1111");
      expect(select.stdout).not.toMatch(/ada\.customer@example\.com|4111 1111 1111 1111/);
      expect(select.stdout).toContain("(5 rows)");

      // 5. DELETE without WHERE is held: psql waits while the thread asks lead.
      const deleting = psql(line, "DELETE FROM orders");
      const held = lead.locator("#live-channel article").filter({ hasText: "Held on demo" });
      await held.waitFor({ timeout: 15_000 });
      expect(await held.locator("pre.code").innerText()).toBe("DELETE FROM orders");
      await held.getByText(/Waiting for approval until/).waitFor();
      await held.scrollIntoViewIfNeeded();
      await shot(lead, "console-4-lead-held-delete");
      // From the keyboard: the buttons are real buttons, reachable and pressed without a mouse.
      await held.getByRole("button", { name: "Approve" }).focus();
      await lead.keyboard.press("Enter");
      const deleted = await deleting;
      expect(deleted.stderr).toBe("");
      expect(deleted.stdout.trim()).toBe("DELETE 20");
      expect(deleted.code).toBe(0);
      await held.getByText(/Approved by Lee Lead: it ran/).waitFor();
      await shot(lead, "console-5-lead-delete-approved");

      // 6. The audit pages list both psql sessions (one per psql run) and their statements.
      await lead.goto(`${demo.base}/audit`);
      await lead.locator('a[href^="/audit/sessions/ses_"]').first().waitFor();
      await shot(lead, "console-6-audit-search");
      const sessionPaths = (await lead.evaluate(
        `[...new Set([...document.querySelectorAll('a[href^="/audit/sessions/ses_"]')].map((a) => a.getAttribute("href")))]`,
      )) as string[];
      expect(sessionPaths).toHaveLength(2);
      const sessionTexts: string[] = [];
      for (const path of sessionPaths) {
        await lead.goto(`${demo.base}${path}`);
        sessionTexts.push(await lead.locator("main").innerText());
      }
      const selectSession = sessionTexts.find((text) => text.includes("SELECT id, customer_email, card_number FROM orders ORDER BY id LIMIT 5"));
      const deleteSession = sessionTexts.find((text) => text.includes("DELETE FROM orders"));
      expect(selectSession).toContain("Dana Developer");
      expect(deleteSession).toContain("Dana Developer");
      expect(deleteSession).toMatch(/Rows affected\s+20/);
      await lead.goto(`${demo.base}${sessionPaths[sessionTexts.indexOf(deleteSession!)]}`);
      await shot(lead, "console-7-audit-session");

      // 7. The console at phone width.
      const phone = await personAt("Dana Developer", { width: 390, height: 844 });
      await phone.locator("#live-dms").getByText("Access to demo approved").waitFor();
      const overflow = await phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth");
      expect(overflow).toBe(0); // nothing wider than the phone
      await shot(phone, "console-8-phone");

    } catch (error) {
      // What each person saw when it went wrong.
      await shot(dev, "console-failure-dev").catch(() => {});
      await shot(lead, "console-failure-lead").catch(() => {});
      throw error;
    }
    expect(problems).toEqual([]);
  }, 60_000);
});

describe("when Chromium cannot start", () => {
  it("the gateway started beside it is closed, and the failure says why", async () => {
    let started: DemoGateway | undefined;
    const failure = await startWithChromium(async () => (started = await startDemoGateway("e2e_no_browser")), "/nonexistent/chromium").then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toMatch(/^Chromium could not start \(\/nonexistent\/chromium\): /);
    // The gateway did start, and nothing listens on its port any more.
    expect(started?.base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await expect(fetch(`${started!.base}/healthz`)).rejects.toMatchObject({ cause: { code: "ECONNREFUSED" } });
  }, 60_000);
});
