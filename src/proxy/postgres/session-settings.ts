import {
  isPinnedSetting,
  keepsPinnedValue,
  PINNED_SETTING_RULE,
  PINNED_SETTINGS,
  type PinnedSetting,
} from "../../rules/sql-pinned-settings.js";
import { ProxyRefusal } from "./connection.js";

/**
 * The session settings the classifier depends on, held at their pinned values for the whole
 * session (see rules/sql-pinned-settings.ts): refused at start-up, forced on the upstream
 * session, and watched in what the server reports. Statements that would change them are refused
 * by the classifier itself.
 */

/** Start-up parameters passed on to the target; the rest (user, database, replication…) are the gateway's. */
const PASSED_ON = ["application_name", "client_encoding", "DateStyle", "TimeZone", "options", "search_path"];

/** Settings a client may not choose at start-up: they change who the session is. */
const IDENTITY_SETTINGS = new Set(["role", "session_authorization"]);

// https://www.postgresql.org/docs/current/errcodes-appendix.html: invalid_parameter_value.
const INVALID_PARAMETER_VALUE = "22023";

function refusal(what: string): ProxyRefusal {
  return new ProxyRefusal(INVALID_PARAMETER_VALUE, `jitgate: ${what} (rule "${PINNED_SETTING_RULE}")`);
}

function pinnedRefusal(name: PinnedSetting, source: string): ProxyRefusal {
  return refusal(`${name} stays ${PINNED_SETTINGS[name]} through jitgate, so that the gateway reads statements as the server does; ${source} asks for another value`);
}

/**
 * The start-up parameters for the upstream session, from the client's: refuses (FATAL 22023)
 * a pinned setting asked for with another value, as a parameter of its own or in `options`
 * (`PGOPTIONS='-c standard_conforming_strings=off'`), and an identity setting in `options`. The
 * upstream session always starts with the pinned values, so that RESET, RESET ALL and DISCARD ALL
 * return to them. https://www.postgresql.org/docs/current/protocol-message-formats.html (StartupMessage)
 */
export function upstreamStartupParams(client: Readonly<Record<string, string>>): Record<string, string> {
  for (const [key, value] of Object.entries(client)) {
    const name = key.toLowerCase();
    if (isPinnedSetting(name) && !keepsPinnedValue(name, value)) {
      throw pinnedRefusal(name, `the start-up parameter ${key}=${JSON.stringify(value)}`);
    }
  }
  const params: Record<string, string> = {};
  for (const key of PASSED_ON) {
    const value = client[key];
    if (value !== undefined) params[key] = value;
  }
  const options = client["options"] === undefined ? [] : checkedOptions(client["options"]);
  options.push("-c", "standard_conforming_strings=on");
  params["options"] = options.map(escapeOption).join(" ");
  params["client_encoding"] = PINNED_SETTINGS.client_encoding;
  return params;
}

/**
 * The words of a start-up `options` string, checked. PostgreSQL splits it at white space, a
 * backslash taking the next character literally (pg_split_opts), and reads each word as a
 * command-line switch; only settings (`-c name=value`, `-cname=value`, `--name=value`) are passed
 * on. https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-OPTIONS
 */
function checkedOptions(options: string): string[] {
  const words = splitOptions(options);
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    let setting: string | undefined;
    if (word === "-c") setting = words[++i];
    else if (word.startsWith("--")) setting = word.slice(2);
    else if (word.startsWith("-c")) setting = word.slice(2);
    if (setting === undefined || !setting.includes("=")) {
      throw refusal(`start-up options may only hold settings (-c name=value); ${JSON.stringify(word)} is not one`);
    }
    const equals = setting.indexOf("=");
    // ParseLongOption: a `-` in the name means `_`.
    const name = setting.slice(0, equals).replace(/-/g, "_").toLowerCase();
    const value = setting.slice(equals + 1);
    if (isPinnedSetting(name) && !keepsPinnedValue(name, value)) throw pinnedRefusal(name, `the start-up option ${JSON.stringify(word === "-c" ? `-c ${setting}` : word)}`);
    if (IDENTITY_SETTINGS.has(name)) throw refusal(`${name} cannot be chosen at start-up through jitgate`);
    out.push("-c", `${name}=${value}`);
  }
  return out;
}

function splitOptions(options: string): string[] {
  const words: string[] = [];
  let current: string | undefined;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i]!;
    if (/\s/.test(ch)) {
      if (current !== undefined) words.push(current);
      current = undefined;
    } else if (ch === "\\" && i + 1 < options.length) {
      current = (current ?? "") + options[++i]!;
    } else {
      current = (current ?? "") + ch;
    }
  }
  if (current !== undefined) words.push(current);
  return words;
}

function escapeOption(word: string): string {
  return word.replace(/[\s\\]/g, (ch) => `\\${ch}`);
}

/**
 * Why a ParameterStatus frame from the target ends the session, if it does: a pinned setting
 * reported with another value means the classifier no longer reads as the server does (fail
 * closed). https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-ASYNC
 */
export function pinnedSettingChange(frame: Buffer): string | undefined {
  // 'S', int32 length, name\0, value\0
  const nameEnd = frame.indexOf(0, 5);
  if (nameEnd < 0) return undefined;
  const name = frame.toString("utf8", 5, nameEnd);
  if (!isPinnedSetting(name)) return undefined;
  const valueEnd = frame.indexOf(0, nameEnd + 1);
  const value = frame.toString("utf8", nameEnd + 1, valueEnd < 0 ? frame.length : valueEnd);
  if (keepsPinnedValue(name, value)) return undefined;
  return `jitgate ended the session: the target reports ${name}=${value}, and jitgate only reads statements with ${name}=${PINNED_SETTINGS[name]} (rule "${PINNED_SETTING_RULE}")`;
}

/** The rule a statement whose bytes are not valid UTF-8 is blocked under. */
export const INVALID_ENCODING_RULE = "invalid-encoding";
export const INVALID_ENCODING_DETAIL = "the statement is not valid UTF-8, and client_encoding stays UTF8 through jitgate";
