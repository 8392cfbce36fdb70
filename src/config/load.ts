import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { configSchema, type Config } from "./schema.js";
import { formatPath, substituteEnv } from "./env.js";
import { DEMO_SOURCE, demoConfigYaml } from "../demo/demo-config.js";

export class ConfigError extends Error {
  readonly code = "config_invalid";
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`${source}: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n  ${problems.join("\n  ")}`);
    this.name = "ConfigError";
  }
}

function describe(issue: z.core.$ZodIssue, unset: Map<string, string>, fromEnv: Set<string>): string[] {
  const path = formatPath(issue.path);
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unknown key (not part of the configuration)`);
  }
  if (issue.code === "invalid_type" && issue.input === undefined) {
    const variable = unset.get(path);
    return [`${path}: is required${variable ? ` (environment variable ${variable} is not set)` : ""}`];
  }
  if (issue.code === "invalid_union" && issue.errors.length > 0 && "discriminator" in issue === false) {
    // A mask rule or similar union: name the shapes that would have been accepted.
    return [`${path}: ${issue.message}`];
  }
  if (issue.code === "custom" && issue.message.startsWith("is required")) {
    // A key required by another one (teams.tenantId with teams.appId): name the unset variable too.
    const variable = unset.get(path);
    return [`${path}: ${issue.message}${variable ? ` (environment variable ${variable} is not set)` : ""}`];
  }
  // Values that came from the environment are usually secrets: never echo them; nor a seal key written in the file.
  const received =
    issue.input === undefined || typeof issue.input === "object" || fromEnv.has(path) || /^audit\.(sealKey|retiredSealKeys\[\d+\])\.key$/.test(path)
      ? ""
      : ` (got ${JSON.stringify(issue.input)})`;
  const message = issue.message.startsWith('"') ? issue.message : `${issue.message}${received}`;
  return [`${path}: ${message}`];
}

/** Parses and validates configuration text; every mistake is reported at once. */
export function parseConfig(text: string, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const document = parseDocument(text, { prettyErrors: true });
  if (document.errors.length > 0) {
    throw new ConfigError(
      source,
      // prettyErrors puts a code excerpt after "at line L, column C:"; keep the one line.
      document.errors.slice(0, 1).map((error) => `YAML: ${error.message.split("\n")[0]!.replace(/:\s*$/, "")}`),
    );
  }
  const raw = document.toJS() ?? {};
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(source, ["(root): expected a mapping of settings"]);
  }
  // No `redis:` in the file: REDIS_URL from the environment, as `redis: ${REDIS_URL}` would say.
  if (!("redis" in raw) && env.REDIS_URL) (raw as Record<string, unknown>).redis = "${REDIS_URL}";
  const substituted = substituteEnv(raw, env);
  // reportInput: an issue carries the offending value, which tells "missing" from "wrong type".
  const result = configSchema.safeParse(substituted.value, { reportInput: true });
  const problems = [...substituted.errors];
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(...describe(issue, substituted.unset, substituted.fromEnv));
  }
  if (problems.length > 0) throw new ConfigError(source, problems);
  return result.data!;
}

export const DEFAULT_CONFIG_PATH = "./jitgate.yaml";

/**
 * Reads `JITGATE_CONFIG` (default ./jitgate.yaml). A missing default file means demo mode (see
 * src/demo/demo-config.ts); a missing file that was named explicitly is an error.
 */
export function loadConfig(
  path: string | undefined = process.env.JITGATE_CONFIG,
  env: NodeJS.ProcessEnv = process.env,
): { config: Config; source: string } {
  const file = path ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && path === undefined) {
      return { config: parseConfig(demoConfigYaml(), DEMO_SOURCE, env), source: DEMO_SOURCE };
    }
    throw new ConfigError(file, [`cannot read the file: ${(error as Error).message}`]);
  }
  return { config: parseConfig(text, file, env), source: file };
}
