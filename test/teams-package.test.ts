import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inflateSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { manifestProblems, pngSize, TEAMS_DIR } from "../src/bot/teams/teams-package.js";

/**
 * `jitgate teams package`: the real CLI writes the zip, the system's unzip opens it, and what is
 * inside is the manifest with the real ids and host (valid against the v1.17 schema's required
 * fields) and the two icons Teams asks for.
 */

const CLI = join(import.meta.dirname, "..", "src", "cli.ts");
const APP_ID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
const dir = mkdtempSync(join(tmpdir(), "jitgate-teams-"));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(command: string, args: string[], cwd = dir): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const jitgate = (args: string[]) => run(process.execPath, ["--import", "tsx", CLI, ...args], join(import.meta.dirname, ".."));

/** The RGBA pixels of a non-interlaced 8-bit RGBA PNG whose rows use filter 0 (as teams/ icons are written). */
function rgbaPixels(data: Buffer): { width: number; pixels: number[][] } {
  const { width, height } = pngSize(data)!;
  expect(data[24]).toBe(8); // bit depth
  expect(data[25]).toBe(6); // RGBA
  const idat: Buffer[] = [];
  for (let at = 8; at < data.length; ) {
    const length = data.readUInt32BE(at);
    if (data.toString("latin1", at + 4, at + 8) === "IDAT") idat.push(data.subarray(at + 8, at + 8 + length));
    at += 12 + length;
  }
  const rows = inflateSync(Buffer.concat(idat));
  const pixels: number[][] = [];
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 4);
    expect(rows[row]).toBe(0);
    for (let x = 0; x < width; x++) pixels.push([...rows.subarray(row + 1 + x * 4, row + 5 + x * 4)]);
  }
  return { width, pixels };
}

describe("jitgate teams package", () => {
  it("writes a zip that unzip opens: the manifest with the real ids and host, and both icons at its root", async () => {
    const out = join(dir, "jitgate-teams.zip");
    const result = await jitgate(["teams", "package", "--app-id", APP_ID, "--host", "jitgate.example.com", "--app-version", "1.2.3", "--out", out]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`wrote ${out}: Teams app ${APP_ID} version 1.2.3`);

    const test = await run("unzip", ["-t", out]);
    expect(test.stdout).toContain("No errors detected");
    const unpacked = join(dir, "unpacked");
    expect((await run("unzip", ["-q", out, "-d", unpacked])).code).toBe(0);
    expect(readdirSync(unpacked).sort()).toEqual(["color.png", "manifest.json", "outline.png"]);

    const manifest = JSON.parse(readFileSync(join(unpacked, "manifest.json"), "utf8")) as Record<string, any>;
    expect(manifestProblems(manifest)).toEqual([]);
    expect(manifest.manifestVersion).toBe("1.17");
    expect(manifest.id).toBe(APP_ID);
    expect(manifest.version).toBe("1.2.3");
    expect(manifest.bots[0].botId).toBe(APP_ID);
    expect(manifest.webApplicationInfo).toEqual({ id: APP_ID, resource: `api://botid-${APP_ID}` });
    expect(manifest.validDomains).toEqual(["jitgate.example.com"]);
    expect(manifest.developer).toMatchObject({ websiteUrl: "https://jitgate.example.com/", privacyUrl: "https://jitgate.example.com/privacy", termsOfUseUrl: "https://jitgate.example.com/terms" });
    expect(JSON.stringify(manifest)).not.toMatch(/YOUR-HOST|00000000-0000/);
    expect(manifest.icons).toEqual({ color: "color.png", outline: "outline.png" });

    // The icons are the repository's, and what Teams asks for.
    for (const name of ["color.png", "outline.png"]) expect(readFileSync(join(unpacked, name)).equals(readFileSync(join(TEAMS_DIR, name)))).toBe(true);
    const color = rgbaPixels(readFileSync(join(unpacked, "color.png")));
    expect(color.width).toBe(192);
    expect(color.pixels.every((p) => p[3] === 255)).toBe(true); // opaque
    expect(new Set(color.pixels.map((p) => p.join())).size).toBeGreaterThan(1); // not one flat colour
    const outline = rgbaPixels(readFileSync(join(unpacked, "outline.png")));
    expect(outline.width).toBe(32);
    // White on transparent: every pixel is white (at any opacity) or fully transparent, and both occur.
    expect(outline.pixels.every(([r, g, b, a]) => a === 0 || (r === 255 && g === 255 && b === 255))).toBe(true);
    expect(outline.pixels.some((p) => p[3] === 0)).toBe(true);
    expect(outline.pixels.some((p) => p[3] === 255)).toBe(true);
  }, 60_000);

  it("refuses an app id that is not a GUID (or the placeholder) and a host with a scheme, writing nothing", async () => {
    const out = join(dir, "refused.zip");
    for (const [appId, host, expected] of [
      ["not-a-guid", "jitgate.example.com", "--app-id is not an app id"],
      ["00000000-0000-0000-0000-000000000000", "jitgate.example.com", "--app-id is not an app id"],
      [APP_ID, "https://jitgate.example.com/", "--host is not a host name"],
      [APP_ID, "*.example.com", "--host is not a host name"],
    ] as const) {
      const result = await jitgate(["teams", "package", "--app-id", appId, "--host", host, "--out", out]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(expected);
      expect(existsSync(out)).toBe(false);
    }
    const missing = await jitgate(["teams", "package", "--host", "jitgate.example.com"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("required option '--app-id <guid>' not specified");
  }, 60_000);

  it("checks the manifest against the schema's required fields and formats, naming each problem", () => {
    const template = JSON.parse(readFileSync(join(TEAMS_DIR, "manifest.json"), "utf8")) as Record<string, any>;
    // As shipped, the template still holds placeholders: it is not an uploadable manifest on its own.
    expect(manifestProblems(template)).toEqual(
      expect.arrayContaining(["id is the placeholder GUID", "bots[0].botId is the placeholder GUID", 'validDomains[0] is not valid: "YOUR-HOST"']),
    );
    const broken = structuredClone(template);
    broken.id = APP_ID;
    delete broken.developer.privacyUrl;
    delete broken.icons.outline;
    broken.accentColor = "blue";
    broken.name.short = "a name far longer than thirty characters";
    delete broken.description;
    expect(manifestProblems(broken)).toEqual(
      expect.arrayContaining([
        "developer.privacyUrl is required",
        "name.short is longer than 30 characters",
        "description is required",
        "description.short is required",
        "icons.outline is required",
        'accentColor is not valid: "blue"',
      ]),
    );
  });
});
