import { readFile } from "node:fs/promises";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Storage } from "../src/db/client.js";
import { mountAuditPages } from "../src/http/audit/audit-pages.js";
import { HttpServer } from "../src/infra/web/http-server.js";
import { auditTestAuth } from "./audit-pages-auth.js";
import { seedAuditHistory, type Seeded } from "./audit-pages-seed.js";
import { ARTIFACTS, launchChromium } from "./support/browser.js";
import { testPostgresStorage } from "./support/databases.js";

/** How far the page runs off the side of the viewport (0 when it fits). Page code is a string: tsc here has no DOM types. */
const overflowX = (page: Page) => page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth");

describe("audit pages in a browser", () => {
  let storage: Storage;
  let seeded: Seeded;
  let http: HttpServer;
  let base: string;
  let browser: Browser;
  const problems: string[] = [];

  beforeAll(async () => {
    storage = await testPostgresStorage("audit_browser");
    seeded = await seedAuditHistory(storage.db);
    http = new HttpServer((error) => problems.push(String(error)));
    const { auth } = auditTestAuth(seeded.broker, http);
    mountAuditPages(http, { broker: seeded.broker, auth });
    // The page shell's stylesheet is the console's; served here as the console serves it, so the
    // screenshots show the pages as people see them.
    const shell = await readFile("src/bot/console/assets/console.css");
    http.route("GET", "/console/assets/console.css", (_req, res) => {
      res.writeHead(200, { "content-type": "text/css; charset=utf-8" });
      res.end(shell);
    });
    const address = await http.listen("127.0.0.1:0");
    base = `http://127.0.0.1:${address.port}`;
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await http?.close();
    await storage?.close();
  });

  /** A fresh browser context that picks `who` on the demo login page, as a person would. */
  async function loggedIn(who: string, viewport: { width: number; height: number }, path: string): Promise<Page> {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    page.on("response", (response) => {
      if (response.status() >= 400) problems.push(`${response.status()} ${new URL(response.url()).pathname}`);
    });
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()} (${message.location().url})`);
    });
    await page.goto(`${base}${path}`);
    expect(new URL(page.url()).pathname).toBe("/console/login");
    await page.getByRole("button", { name: new RegExp(who) }).click();
    await page.waitForURL(`${base}${path}`);
    return page;
  }

  it("replays an SSH session with asciinema-player, readable at desktop and phone width", async () => {
    const path = `/audit/sessions/${seeded.ssh.sessionId}`;
    for (const [name, viewport] of [
      ["desktop", { width: 1280, height: 800 }],
      ["phone", { width: 390, height: 844 }],
    ] as const) {
      const page = await loggedIn("Lee Lead", viewport, path);
      const player = page.locator(".ap-player");
      await player.waitFor({ state: "visible", timeout: 15_000 });
      expect(await page.locator("[data-cast] .ap-player").count()).toBe(1);
      // The player took the place of the text output, which folds away but stays in the page.
      expect(await page.locator("details.text-output").getAttribute("open")).toBeNull();
      const box = (await player.boundingBox())!;
      expect(box.width).toBeGreaterThan(100);
      expect(box.x + box.width).toBeLessThanOrEqual(viewport.width + 1);
      // Nothing of the page runs off the side of a phone.
      const overflow = await overflowX(page);
      expect(overflow).toBeLessThanOrEqual(0);
      // Play it and let the recording draw its prompt.
      await player.click();
      await page.locator(".ap-term", { hasText: "deploy@web-1" }).waitFor({ timeout: 15_000 });
      await page.screenshot({ path: `${ARTIFACTS}/audit-ssh-session-${name}.png`, fullPage: true });
      await page.context().close();
    }
    expect(problems).toEqual([]);
  });

  it("works from the keyboard: the search form, its results and the links to a request", async () => {
    const page = await loggedIn("Lee Lead", { width: 1280, height: 800 }, "/audit");
    await page.locator("#person").focus();
    await page.keyboard.type("Ann");
    await page.keyboard.press("Tab");
    expect(await page.evaluate<string | undefined>("document.activeElement?.id")).toBe("target");
    await page.selectOption("#kind", "request.created");
    await page.locator("#kind").focus();
    await page.keyboard.press("Tab");
    expect(await page.evaluate<string | null | undefined>("document.activeElement?.textContent")).toBe("Search");
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/audit\?person=Ann/);
    expect(await page.locator("table.events tbody tr").count()).toBe(1);
    await page.screenshot({ path: `${ARTIFACTS}/audit-search-desktop.png`, fullPage: true });
    await page.getByRole("link", { name: seeded.pg.requestId }).first().focus();
    await page.keyboard.press("Enter");
    await page.waitForURL(`${base}/audit/requests/${seeded.pg.requestId}`);
    expect(await page.locator("ol.timeline li").count()).toBe(10);
    await page.screenshot({ path: `${ARTIFACTS}/audit-request-desktop.png`, fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/audit/sessions/${seeded.pg.sessionId}`);
    await page.screenshot({ path: `${ARTIFACTS}/audit-pg-session-phone.png`, fullPage: true });
    // At phone width each statement is a card: nothing runs off the side.
    expect(await overflowX(page)).toBeLessThanOrEqual(0);
    await page.goto(`${base}/audit?target=orders-db`);
    await page.screenshot({ path: `${ARTIFACTS}/audit-search-phone.png`, fullPage: true });
    expect(await overflowX(page)).toBeLessThanOrEqual(0);
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.screenshot({ path: `${ARTIFACTS}/audit-pg-session-desktop.png`, fullPage: true });
    await page.context().close();
    expect(problems).toEqual([]);
  });
});
