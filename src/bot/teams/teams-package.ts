import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { zipArchive } from "./zip-archive.js";

/**
 * The Teams app package (`jitgate teams package`): teams/manifest.json with this installation's ids
 * and host filled in, and the two icons, zipped at the archive's root as the Teams admin centre
 * takes it (https://learn.microsoft.com/microsoftteams/platform/concepts/build-and-test/apps-package).
 * teams/ sits three levels above this file both as src/bot/teams/ and as dist/bot/teams/.
 */
export const TEAMS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../teams");

export interface TeamsPackageOptions {
  /** The bot's Microsoft App ID (its Azure Bot registration): the bot id, and the app's id. */
  appId: string;
  /** Where the gateway is reached from the internet, e.g. `jitgate.example.com`. */
  host: string;
  /** The app's version; default the template's. Teams wants a higher one for each upload of the same app. */
  version?: string | undefined;
  /** Where manifest.json and the icons are read (default teams/). */
  dir?: string;
}

export class TeamsPackageError extends Error {
  constructor(readonly problems: string[]) {
    super(`the Teams app package is not valid:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "TeamsPackageError";
  }
}

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const NIL_GUID = "00000000-0000-0000-0000-000000000000";
// A host name (RFC 1123 labels), with an optional port; no scheme, path or wildcard.
const HOST = /^(?=.{1,253}(:|$))([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(:[0-9]{1,5})?$/;
const SEMVER = /^([0-9]|[1-9][0-9]*)\.([0-9]|[1-9][0-9]*)\.([0-9]|[1-9][0-9]*)$/;
const ICON_SIZES = { color: 192, outline: 32 } as const;

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * The manifest checked against what the v1.17 schema requires (its `required` lists, and the
 * patterns and lengths Teams enforces on upload) for the parts jitgate's manifest uses:
 * https://developer.microsoft.com/json-schemas/teams/v1.17/MicrosoftTeams.schema.json
 * Answers the problems, each with its path; none means valid.
 */
export function manifestProblems(manifest: unknown): string[] {
  const problems: string[] = [];
  if (!isObject(manifest)) return ["the manifest is not a JSON object"];
  const text = (path: string, value: unknown, max: number, pattern?: RegExp) => {
    if (typeof value !== "string" || value === "") problems.push(`${path} is required`);
    else if (value.length > max) problems.push(`${path} is longer than ${max} characters`);
    else if (pattern && !pattern.test(value)) problems.push(`${path} is not valid: ${JSON.stringify(value)}`);
  };
  const https = (path: string, value: unknown) => text(path, value, 2048, /^https:\/\/[^\s]+$/);
  const section = (path: string, value: unknown): Json => {
    if (!isObject(value)) problems.push(`${path} is required`);
    return isObject(value) ? value : {};
  };
  if (manifest.manifestVersion !== "1.17") problems.push(`manifestVersion is ${JSON.stringify(manifest.manifestVersion)}; this check knows 1.17`);
  text("version", manifest.version, 256, SEMVER);
  text("id", manifest.id, 64, GUID);
  if (manifest.id === NIL_GUID) problems.push("id is the placeholder GUID");
  const developer = section("developer", manifest.developer);
  text("developer.name", developer.name, 32);
  https("developer.websiteUrl", developer.websiteUrl);
  https("developer.privacyUrl", developer.privacyUrl);
  https("developer.termsOfUseUrl", developer.termsOfUseUrl);
  const name = section("name", manifest.name);
  text("name.short", name.short, 30);
  if (name.full !== undefined) text("name.full", name.full, 100);
  const description = section("description", manifest.description);
  text("description.short", description.short, 80);
  text("description.full", description.full, 4000);
  const icons = section("icons", manifest.icons);
  text("icons.color", icons.color, 2048);
  text("icons.outline", icons.outline, 2048);
  text("accentColor", manifest.accentColor, 7, /^#[0-9a-fA-F]{6}$/);
  const bots = manifest.bots;
  if (bots !== undefined) {
    if (!Array.isArray(bots) || bots.length > 1) problems.push("bots is a list of at most one bot");
    else
      bots.forEach((bot: unknown, index) => {
        const path = `bots[${index}]`;
        const b = section(path, bot);
        text(`${path}.botId`, b.botId, 64, GUID);
        if (b.botId === NIL_GUID) problems.push(`${path}.botId is the placeholder GUID`);
        if (!Array.isArray(b.scopes) || b.scopes.length === 0) problems.push(`${path}.scopes is required`);
        const lists = Array.isArray(b.commandLists) ? (b.commandLists as unknown[]) : [];
        lists.forEach((list, l) => {
          const listPath = `${path}.commandLists[${l}]`;
          const c = section(listPath, list);
          if (!Array.isArray(c.scopes) || c.scopes.length === 0) problems.push(`${listPath}.scopes is required`);
          if (!Array.isArray(c.commands) || c.commands.length > 10) problems.push(`${listPath}.commands is a list of at most 10`);
          else
            c.commands.forEach((command: unknown, i) => {
              const cmd = section(`${listPath}.commands[${i}]`, command);
              text(`${listPath}.commands[${i}].title`, cmd.title, 32);
              text(`${listPath}.commands[${i}].description`, cmd.description, 128);
            });
        });
      });
  }
  if (manifest.validDomains !== undefined) {
    if (!Array.isArray(manifest.validDomains)) problems.push("validDomains is a list");
    else manifest.validDomains.forEach((domain: unknown, i) => text(`validDomains[${i}]`, domain, 2048, HOST));
  }
  if (manifest.webApplicationInfo !== undefined) {
    const info = section("webApplicationInfo", manifest.webApplicationInfo);
    text("webApplicationInfo.id", info.id, 64, GUID);
    if (info.resource !== undefined) text("webApplicationInfo.resource", info.resource, 2048);
  }
  return problems;
}

/** Width and height of a PNG (its IHDR), or undefined when the bytes are not a PNG. */
export function pngSize(data: Buffer): { width: number; height: number } | undefined {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (data.length < 24 || !data.subarray(0, 8).equals(signature) || data.toString("latin1", 12, 16) !== "IHDR") return undefined;
  return { width: data.readUInt32BE(16), height: data.readUInt32BE(20) };
}

/** The manifest for this installation: the template with the app id and host in place of the placeholders. */
export function teamsManifest(template: Json, options: Pick<TeamsPackageOptions, "appId" | "host" | "version">): Json {
  const { appId, host } = options;
  const site = `https://${host}`;
  const manifest = structuredClone(template);
  manifest.id = appId;
  if (options.version) manifest.version = options.version;
  manifest.developer = { ...(isObject(manifest.developer) ? manifest.developer : {}), websiteUrl: `${site}/`, privacyUrl: `${site}/privacy`, termsOfUseUrl: `${site}/terms` };
  if (Array.isArray(manifest.bots)) manifest.bots = manifest.bots.map((bot: unknown) => ({ ...(isObject(bot) ? bot : {}), botId: appId }));
  manifest.validDomains = [host];
  manifest.webApplicationInfo = { id: appId, resource: `api://botid-${appId}` };
  return manifest;
}

/** Builds the package, or throws TeamsPackageError naming every problem (bad ids, host, manifest or icons). */
export function buildTeamsPackage(options: TeamsPackageOptions): { zip: Buffer; manifest: Json } {
  const dir = options.dir ?? TEAMS_DIR;
  const problems: string[] = [];
  if (!GUID.test(options.appId) || options.appId === NIL_GUID) problems.push(`--app-id is not an app id (a GUID like 1b4e28ba-2fa1-11d2-883f-0016d3cca427): ${JSON.stringify(options.appId)}`);
  if (!HOST.test(options.host)) problems.push(`--host is not a host name (like jitgate.example.com, without https:// or a path): ${JSON.stringify(options.host)}`);
  if (options.version !== undefined && !SEMVER.test(options.version)) problems.push(`--version is not a version like 1.2.3: ${JSON.stringify(options.version)}`);
  if (problems.length > 0) throw new TeamsPackageError(problems);

  const manifest = teamsManifest(JSON.parse(readFileSync(resolve(dir, "manifest.json"), "utf8")) as Json, options);
  problems.push(...manifestProblems(manifest));
  const files: { name: string; data: Buffer }[] = [{ name: "manifest.json", data: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, "utf8") }];
  const icons = isObject(manifest.icons) ? manifest.icons : {};
  for (const kind of ["color", "outline"] as const) {
    const file = icons[kind];
    if (typeof file !== "string") continue; // reported above
    let data: Buffer;
    try {
      data = readFileSync(resolve(dir, file));
    } catch {
      problems.push(`icons.${kind}: ${file} is not in ${dir}`);
      continue;
    }
    const size = pngSize(data);
    const want = ICON_SIZES[kind];
    if (!size) problems.push(`icons.${kind}: ${file} is not a PNG`);
    else if (size.width !== want || size.height !== want) problems.push(`icons.${kind}: ${file} is ${size.width}×${size.height}, not ${want}×${want}`);
    files.push({ name: file, data });
  }
  if (problems.length > 0) throw new TeamsPackageError(problems);
  return { zip: zipArchive(files), manifest };
}
