/**
 * Detectors find sensitive values inside a text value and replace each one where it stands,
 * keeping the rest of the value byte for byte.
 *
 * Text is decoded as latin1, not UTF-8: every pattern here is ASCII, latin1 maps each byte to
 * one code unit, so re-encoding as latin1 gives back the original bytes around a match exactly,
 * even when a value is not valid UTF-8 (a SQL_ASCII database). Multi-byte UTF-8 characters show
 * up as code units 0x80–0xFF, which only the email pattern admits (as whole characters of an
 * internationalised address). For the same reason the patterns never use `\s` (it would admit
 * 0xA0, a UTF-8 continuation byte) or the `i` flag.
 *
 * Replacements only use ASCII letters, digits, `*`, `-`, `+`, `@`, `.`, spaces and parentheses
 * the original already had, so a masked value stays a valid JSON string body and, since
 * separators are kept as they were, needs the same quoting in an array or record literal as
 * the original did.
 */

export type DetectorKind = "email" | "credit-card" | "iban" | "phone";

/** Masks the detector matches inside one text value. */
export interface TextMasker {
  /** The masked value, or undefined when nothing in it matched (the caller keeps the original). */
  mask(value: Buffer): Buffer | undefined;
  /** No value shorter than this (in bytes) can match: `mask` of it is undefined. */
  readonly minLength: number;
}

interface Span {
  start: number;
  end: number;
  replacement: string;
}

const AT = 0x40;
const PLUS = 0x2b;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const UPPER_A = 0x41;
const UPPER_Z = 0x5a;

/** Shortest texts a detector can match: `a@b.cc`, 13-digit card, Norway's 15-character IBAN, `+` and 8 digits. */
const MIN_EMAIL_BYTES = 6;
const MIN_CARD_DIGITS = 13;
const MIN_IBAN_BYTES = 15;
const MIN_PHONE_BYTES = 9;

// Local part per the unquoted "dot-atom" subset of RFC 5322 that real addresses use; domain is
// dot-separated labels (RFC 1035 letters-digits-hyphen) ending in an alphabetic TLD. Bytes
// 0x80–0xFF are UTF-8 letters of an internationalised address (RFC 6531) such as `zoë@bücher.de`.
const EMAIL =
  /(?<![A-Za-z0-9._%+\x80-\xff-])[A-Za-z0-9._%+\x80-\xff-]+@(?:[A-Za-z0-9\x80-\xff](?:[A-Za-z0-9\x80-\xff-]{0,61}[A-Za-z0-9\x80-\xff])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9\x80-\xff-])/g;

// Payment card numbers (ISO/IEC 7812) as people write them: 13–19 digits in one run, in groups
// of four (4-4-4-4, 4-4-4-4-1..3, 4-4-4-1..4) or Amex/Diners 4-6-4/4-6-5, one consistent
// separator. The first digit must be 2–6 (the major industry identifiers of the card schemes:
// Mastercard 2/5, Amex/Diners/JCB 3, Visa 4, Discover/UnionPay/Maestro 6), which keeps
// millisecond timestamps and most ids (which start with 1) out even when they pass Luhn.
// A digit run that goes on past the match through `.`, `,` or `-` is a different number.
const CARD =
  /(?<![0-9A-Za-z_+]|[0-9][.,-])(?:[2-6][0-9]{12,18}|[2-6][0-9]{3}([ -])[0-9]{4}\1[0-9]{4}\1(?:[0-9]{4}(?:\1[0-9]{1,3})?|[0-9]{1,3})|[2-6][0-9]{3}([ -])[0-9]{6}\2[0-9]{4,5})(?![0-9A-Za-z_]|[.,-][0-9])/g;

// IBAN (ISO 13616): country code, two check digits, BBAN; 15–34 characters in all. Either the
// electronic form (no spaces) or the print form (groups of four separated by one space).
// Upper case only, as ISO 13616 writes it; this keeps lower-case hex digests out.
const IBAN =
  /(?<![0-9A-Za-z_])[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?![0-9A-Za-z_])/g;

// E.164 numbers as written: `+`, a country code that does not start with 0, then digit groups
// separated by one space or dash, optionally with a parenthesised group (`+1 (555) 123-4567`,
// `+44 (0)20 7946 0958`). Each repetition starts with a separator so the pattern cannot split a
// digit run in two ways (no catastrophic backtracking). 8–15 digits are checked afterwards.
const PHONE =
  /(?<![0-9A-Za-z_+])\+[1-9][0-9]*(?:(?:[ -]|[ -]?\([0-9]{1,5}\)[ -]?)[0-9]+)*(?![0-9A-Za-z_])/g;

/** `+2026-11-22` is an ISO 8601 expanded-year date, not a phone number. */
const EXPANDED_YEAR_DATE = /^\+[0-9]{4}-[0-9]{2}-[0-9]{2}$/;

export function compileDetectors(kinds: Iterable<DetectorKind>): TextMasker | undefined {
  const wanted = new Set(kinds);
  if (wanted.size === 0) return undefined;
  return new DetectorSet(wanted);
}

class DetectorSet implements TextMasker {
  readonly #email: boolean;
  readonly #card: boolean;
  readonly #iban: boolean;
  readonly #phone: boolean;

  readonly minLength: number;

  constructor(kinds: ReadonlySet<DetectorKind>) {
    this.#email = kinds.has("email");
    this.#card = kinds.has("credit-card");
    this.#iban = kinds.has("iban");
    this.#phone = kinds.has("phone");
    // The length checks `mask` starts with (card and IBAN are both looked for from MIN_CARD_DIGITS on).
    this.minLength = Math.min(
      this.#email ? MIN_EMAIL_BYTES : Infinity,
      this.#phone ? MIN_PHONE_BYTES : Infinity,
      this.#card || this.#iban ? MIN_CARD_DIGITS : Infinity,
    );
  }

  mask(value: Buffer): Buffer | undefined {
    // Cheap byte checks decide which detectors can match at all; most values fail every one
    // and are never decoded.
    const email = this.#email && value.length >= MIN_EMAIL_BYTES && value.includes(AT);
    const phone = this.#phone && value.length >= MIN_PHONE_BYTES && value.includes(PLUS);
    let card = false;
    let iban = false;
    if ((this.#card || this.#iban) && value.length >= MIN_CARD_DIGITS) {
      const needDigits = this.#card ? MIN_CARD_DIGITS : 2;
      const needUpper = this.#iban ? 2 : 0;
      let digits = 0;
      let upper = 0;
      for (let i = 0; i < value.length && (digits < needDigits || upper < needUpper); i++) {
        const byte = value[i]!;
        if (byte >= DIGIT_0 && byte <= DIGIT_9) digits++;
        else if (byte >= UPPER_A && byte <= UPPER_Z) upper++;
      }
      card = this.#card && digits >= MIN_CARD_DIGITS;
      iban = this.#iban && value.length >= MIN_IBAN_BYTES && digits >= 2 && upper >= 2;
    }
    if (!(email || phone || card || iban)) return undefined;

    const text = value.toString("latin1");
    const spans: Span[] = [];
    if (email) findEmails(text, spans);
    if (iban) findIbans(text, spans);
    if (card) findCards(text, spans);
    if (phone) findPhones(text, spans);
    if (spans.length === 0) return undefined;
    return Buffer.from(applySpans(text, spans), "latin1");
  }
}

function findEmails(text: string, spans: Span[]): void {
  EMAIL.lastIndex = 0;
  for (let m = EMAIL.exec(text); m !== null; m = EMAIL.exec(text)) {
    const found = m[0];
    const at = found.lastIndexOf("@");
    // `j***@example.com`: the first character and the domain stay so a masked row is still
    // recognisable to a human (whose address, which company); the rest of the local part goes.
    spans.push({ start: m.index, end: m.index + found.length, replacement: `${found.slice(0, firstCharLength(found))}***${found.slice(at)}` });
  }
}

function findCards(text: string, spans: Span[]): void {
  CARD.lastIndex = 0;
  for (let m = CARD.exec(text); m !== null; m = CARD.exec(text)) {
    const digits = m[0].replace(/[ -]/g, "");
    if (!luhnValid(digits)) continue;
    // Fixed shape whatever the length or grouping: only the last four digits stay, as on a
    // receipt (PCI DSS 3.4 allows at most the first six and last four).
    spans.push({ start: m.index, end: m.index + m[0].length, replacement: `****-****-****-${digits.slice(-4)}` });
  }
}

function findIbans(text: string, spans: Span[]): void {
  IBAN.lastIndex = 0;
  for (let m = IBAN.exec(text); m !== null; m = IBAN.exec(text)) {
    const found = m[0];
    const compact = found.replace(/ /g, "");
    if (compact.length < 15 || compact.length > 34 || !ibanChecksumValid(compact)) continue;
    // `DE** **** **** **** **** 00`: country code and the last two characters stay, spaces stay
    // where they were. The length is fixed per country, so keeping it reveals nothing more.
    spans.push({ start: m.index, end: m.index + found.length, replacement: starExcept(found, 2, 2) });
  }
}

function findPhones(text: string, spans: Span[]): void {
  PHONE.lastIndex = 0;
  for (let m = PHONE.exec(text); m !== null; m = PHONE.exec(text)) {
    const found = m[0];
    let digits = 0;
    for (let i = 0; i < found.length; i++) {
      const code = found.charCodeAt(i);
      if (code >= DIGIT_0 && code <= DIGIT_9) digits++;
    }
    // E.164 allows at most 15 digits; fewer than 8 is a short code or arithmetic (`+1234`).
    if (digits < 8 || digits > 15 || EXPANDED_YEAR_DATE.test(found)) continue;
    // `+49 151 1234 5678` → `+** *** **** **78`: `+`, separators and the last two digits stay.
    spans.push({ start: m.index, end: m.index + found.length, replacement: starExcept(found, 0, 2) });
  }
}

/** Length in latin1 code units (bytes) of the first UTF-8 character of `text`, so a mask never splits one. */
function firstCharLength(text: string): number {
  let length = 1;
  if (text.charCodeAt(0) >= 0xc0) {
    while (length < text.length && (text.charCodeAt(length) & 0xc0) === 0x80) length++;
  }
  return length;
}

/** Replaces letters and digits with `*`, except the first `keepFirst` and last `keepLast` of them. */
function starExcept(text: string, keepFirst: number, keepLast: number): string {
  let total = 0;
  for (let i = 0; i < text.length; i++) if (isAlnum(text.charCodeAt(i))) total++;
  let seen = 0;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (!isAlnum(text.charCodeAt(i))) {
      out += ch;
      continue;
    }
    out += seen < keepFirst || seen >= total - keepLast ? ch : "*";
    seen++;
  }
  return out;
}

function isAlnum(code: number): boolean {
  return (code >= DIGIT_0 && code <= DIGIT_9) || (code >= UPPER_A && code <= UPPER_Z) || (code >= 0x61 && code <= 0x7a);
}

/** Writes the replacements into `text`; where matches overlap, the earlier (then longer) one wins. */
function applySpans(text: string, spans: Span[]): string {
  if (spans.length > 1) spans.sort((a, b) => a.start - b.start || b.end - a.end);
  let out = "";
  let cursor = 0;
  for (const span of spans) {
    if (span.start < cursor) continue;
    out += text.slice(cursor, span.start) + span.replacement;
    cursor = span.end;
  }
  return out + text.slice(cursor);
}

/** The Luhn mod-10 check (ISO/IEC 7812-1 annex B) over a string of ASCII digits. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - DIGIT_0;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/**
 * The ISO 7064 mod 97-10 check of ISO 13616: move the first four characters to the end, read
 * letters as 10–35, and the number must leave remainder 1 modulo 97. Computed piecewise so it
 * never needs a big integer.
 */
export function ibanChecksumValid(iban: string): boolean {
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (let i = 0; i < rearranged.length; i++) {
    const code = rearranged.charCodeAt(i);
    if (code >= DIGIT_0 && code <= DIGIT_9) {
      remainder = (remainder * 10 + (code - DIGIT_0)) % 97;
    } else if (code >= UPPER_A && code <= UPPER_Z) {
      remainder = (remainder * 100 + (code - UPPER_A + 10)) % 97;
    } else {
      return false;
    }
  }
  return remainder === 1;
}
