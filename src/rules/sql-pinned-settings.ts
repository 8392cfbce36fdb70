/**
 * The two session settings that decide how PostgreSQL's lexer reads a statement's bytes. The
 * classifier parses as the server does only while they hold these values, so the gateway pins
 * them: a client may not change them at start-up or in any statement, and a session whose server
 * reports another value is ended. https://www.postgresql.org/docs/current/runtime-config-compatible.html
 * and https://www.postgresql.org/docs/current/multibyte.html
 */

export const PINNED_SETTINGS = {
  // With `off`, a backslash in '…' escapes the next character: `'a\''` is a whole literal to the
  // server, and a classifier that reads it with `on` sees a different statement.
  standard_conforming_strings: "on",
  // Client-only encodings (SJIS, BIG5, GBK, GB18030, UHC, JOHAB) have multi-byte characters whose
  // second byte can be `\` or `'`; the server converts them before lexing, the classifier cannot.
  client_encoding: "UTF8",
} as const;

export type PinnedSetting = keyof typeof PINNED_SETTINGS;

/** The rule name a refused change of a pinned setting is reported under; not configurable. */
export const PINNED_SETTING_RULE = "pinned-setting";

export function isPinnedSetting(name: string): name is PinnedSetting {
  return Object.hasOwn(PINNED_SETTINGS, name.toLowerCase());
}

// Boolean spellings PostgreSQL reads as true (parse_bool); `1` too, but a number is refused here so
// that no verdict depends on a number's value (the classification cache folds numbers).
const TRUE_WORDS = new Set(["on", "true", "yes", "t", "y", "tr", "tru", "ye"]);

/** PostgreSQL compares encoding names ignoring case and every non-alphanumeric character (clean_encoding_name). */
function cleanEncodingName(value: string): string {
  return value.toLowerCase().replace(/[^a-z0-9]/g, "");
}

/**
 * Whether setting `name` to `value` (as text, the way SET and set_config pass it) leaves it at its
 * pinned value. Only the spellings the server reads as the pinned value count; anything else,
 * including values the server would reject, is a change. `SQL_ASCII` is accepted for
 * client_encoding because the server then converts nothing and reads the bytes exactly as sent,
 * which the gateway checks are UTF-8.
 */
export function keepsPinnedValue(name: PinnedSetting, value: string): boolean {
  const lower = value.trim().toLowerCase();
  if (name === "standard_conforming_strings") return TRUE_WORDS.has(lower);
  const clean = cleanEncodingName(value);
  return clean === "utf8" || clean === "unicode" || clean === "sqlascii";
}
