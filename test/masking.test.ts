import { afterEach, describe, expect, it, vi } from "vitest";
import { compileMasking, type FieldInfo, type MaskRule, type RowMasker } from "../src/proxy/masking/masker.js";
import { decodeDataRow, encodeDataRow } from "../src/proxy/postgres/backend-codec.js";

// Type OIDs from pg_type.dat.
const TEXT = 25;
const VARCHAR = 1043;
const BPCHAR = 1042;
const NAME = 19;
const INT4 = 23;
const INT8 = 20;
const JSON_OID = 114;
const JSONB = 3802;
const DATE = 1082;

const ALL_DETECTORS: MaskRule[] = [
  { detect: "email" },
  { detect: "credit-card" },
  { detect: "iban" },
  { detect: "phone" },
];

const textField = (name: string, dataTypeID = TEXT): FieldInfo => ({ name, dataTypeID, format: 0 });
const binaryField = (name: string, dataTypeID: number): FieldInfo => ({ name, dataTypeID, format: 1 });

function maskerFor(rules: MaskRule[], fields: FieldInfo[]): RowMasker {
  const masker = compileMasking(rules).forResult(fields);
  if (masker === undefined) throw new Error("expected a RowMasker");
  return masker;
}

/** Masks one text value with the given rules; the masked text, or the input when unchanged. */
function maskText(rules: MaskRule[], text: string): string {
  const { values } = maskerFor(rules, [textField("note")]).mask([Buffer.from(text)]);
  return values[0]!.toString();
}

function asText(values: readonly (Buffer | null)[]): (string | null)[] {
  return values.map((value) => (value === null ? null : value.toString()));
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("column rules", () => {
  it.each([
    { rule: "email", column: "email", masked: true },
    { rule: "email", column: "EMAIL", masked: true },
    { rule: "Card_Number", column: "card_number", masked: true },
    { rule: "email", column: "email_verified", masked: false },
    { rule: "email", column: "user_email", masked: false },
    { rule: "*_email", column: "user_email", masked: true },
    { rule: "*_email", column: "Billing_EMAIL", masked: true },
    { rule: "*_email", column: "email", masked: false },
    { rule: "card*", column: "card_number", masked: true },
    { rule: "a*b", column: "a.b", masked: true },
    { rule: "a.b", column: "axb", masked: false },
  ])("rule $rule on column $column → masked: $masked", ({ rule, column, masked }) => {
    const masking = compileMasking([{ column: rule }]);
    const rowMasker = masking.forResult([textField("id", INT4), textField(column)]);
    if (!masked) {
      expect(rowMasker).toBeUndefined();
      return;
    }
    const out = rowMasker!.mask([Buffer.from("7"), Buffer.from("secret value")]);
    expect(asText(out.values)).toEqual(["7", "***"]);
    expect(out.masked).toBe(1);
  });

  it("replaces a text-format value of any type with *** and json with a JSON string", () => {
    const masker = maskerFor(
      [{ column: "secret" }, { column: "doc" }, { column: "docb" }],
      [textField("secret", INT4), textField("doc", JSON_OID), textField("docb", JSONB)],
    );
    const out = masker.mask([Buffer.from("42"), Buffer.from('{"a":1}'), Buffer.from('{"b":2}')]);
    expect(asText(out.values)).toEqual(["***", '"***"', '"***"']);
    expect(JSON.parse(out.values[1]!.toString())).toBe("***");
    expect(out.masked).toBe(3);
  });

  it("leaves NULL values alone and does not count them", () => {
    const masker = maskerFor([{ column: "email" }], [textField("id", INT4), textField("email")]);
    const values = [Buffer.from("1"), null];
    const out = masker.mask(values);
    expect(out.values).toBe(values);
    expect(out.masked).toBe(0);
  });

  it("does not mutate the input row", () => {
    const masker = maskerFor([{ column: "email" }], [textField("email")]);
    const values = [Buffer.from("ann@example.com")];
    const out = masker.mask(values);
    expect(out.values).not.toBe(values);
    expect(values[0]!.toString()).toBe("ann@example.com");
  });
});

describe("detectors", () => {
  const cases: { name: string; rules: MaskRule[]; input: string; expected: string }[] = [
    // email
    {
      name: "email inside longer text",
      rules: [{ detect: "email" }],
      input: "contact jane.doe+orders@example.com for details",
      expected: "contact j***@example.com for details",
    },
    {
      name: "two emails, one ending a sentence",
      rules: [{ detect: "email" }],
      input: "cc: Bob@mail.example.co.uk, ann@x.org.",
      expected: "cc: B***@mail.example.co.uk, a***@x.org.",
    },
    { name: "email: an @ mention is not an email", rules: [{ detect: "email" }], input: "ping @ops at 10:00", expected: "ping @ops at 10:00" },
    { name: "email: no TLD", rules: [{ detect: "email" }], input: "user@localhost", expected: "user@localhost" },

    // credit card
    { name: "card: valid Luhn", rules: [{ detect: "credit-card" }], input: "4111111111111111", expected: "****-****-****-1111" },
    { name: "card: same digits, bad Luhn", rules: [{ detect: "credit-card" }], input: "4111111111111112", expected: "4111111111111112" },
    {
      name: "card: grouped with spaces and dashes",
      rules: [{ detect: "credit-card" }],
      input: "paid with 4111 1111 1111 1111, refund to 5555-5555-5555-4444",
      expected: "paid with ****-****-****-1111, refund to ****-****-****-4444",
    },
    { name: "card: Amex 4-6-5", rules: [{ detect: "credit-card" }], input: "amex 3782 822463 10005", expected: "amex ****-****-****-0005" },
    { name: "card: order id, bad Luhn", rules: [{ detect: "credit-card" }], input: "order 4000123456789011", expected: "order 4000123456789011" },
    {
      name: "card: Luhn-valid id starting with 1 (no card scheme) is left alone",
      rules: [{ detect: "credit-card" }],
      input: "created_ms=1763812345678",
      expected: "created_ms=1763812345678",
    },
    { name: "card: too long a digit run", rules: [{ detect: "credit-card" }], input: "41111111111111110000", expected: "41111111111111110000" },
    { name: "card: part of a decimal", rules: [{ detect: "credit-card" }], input: "0.4111111111111111", expected: "0.4111111111111111" },

    // IBAN
    { name: "iban: electronic form", rules: [{ detect: "iban" }], input: "DE89370400440532013000", expected: "DE******************00" },
    {
      name: "iban: print form inside text",
      rules: [{ detect: "iban" }],
      input: "pay to DE89 3704 0044 0532 0130 00 by Friday",
      expected: "pay to DE** **** **** **** **** 00 by Friday",
    },
    { name: "iban: letters in the BBAN", rules: [{ detect: "iban" }], input: "GB82WEST12345698765432", expected: "GB******************32" },
    { name: "iban: shortest (Norway)", rules: [{ detect: "iban" }], input: "NO9386011117947", expected: "NO***********47" },
    { name: "iban: bad check digits", rules: [{ detect: "iban" }], input: "DE89370400440532013001", expected: "DE89370400440532013001" },
    { name: "iban: lower-case hex is not an IBAN", rules: [{ detect: "iban" }], input: "de89370400440532013000", expected: "de89370400440532013000" },

    // phone
    { name: "phone: E.164 compact", rules: [{ detect: "phone" }], input: "+4915112345678", expected: "+***********78" },
    { name: "phone: spaces", rules: [{ detect: "phone" }], input: "mobile +49 151 1234 5678 (work)", expected: "mobile +** *** **** **78 (work)" },
    { name: "phone: parentheses and dash", rules: [{ detect: "phone" }], input: "call +1 (555) 123-4567.", expected: "call +* (***) ***-**67." },
    { name: "phone: trunk prefix in parentheses", rules: [{ detect: "phone" }], input: "+44 (0)20 7946 0958", expected: "+** (*)** **** **58" },
    { name: "phone: plain integer", rules: [{ detect: "phone" }], input: "4915112345678", expected: "4915112345678" },
    { name: "phone: date", rules: [{ detect: "phone" }], input: "2026-11-22", expected: "2026-11-22" },
    { name: "phone: expanded-year date", rules: [{ detect: "phone" }], input: "+2026-11-22", expected: "+2026-11-22" },
    { name: "phone: time zone offset", rules: [{ detect: "phone" }], input: "2026-11-22T10:00:00+01:00", expected: "2026-11-22T10:00:00+01:00" },
    { name: "phone: order id", rules: [{ detect: "phone" }], input: "order #100045678901", expected: "order #100045678901" },
    { name: "phone: too few digits", rules: [{ detect: "phone" }], input: "x +1234567", expected: "x +1234567" },
    { name: "phone: too many digits", rules: [{ detect: "phone" }], input: "+1234567890123456", expected: "+1234567890123456" },
    { name: "phone: arithmetic", rules: [{ detect: "phone" }], input: "1+12345678", expected: "1+12345678" },

    // all detectors together
    {
      name: "several kinds of match in one value",
      rules: ALL_DETECTORS,
      input: "ann@example.com paid 4111-1111-1111-1111 from DE89370400440532013000, call +4915112345678",
      expected: "a***@example.com paid ****-****-****-1111 from DE******************00, call +***********78",
    },
    {
      name: "JSON text: detectors apply as-is and it stays valid JSON",
      rules: ALL_DETECTORS,
      input: '{"email":"ann@example.com","card":"4111111111111111","phone":"+44 20 7946 0958"}',
      expected: '{"email":"a***@example.com","card":"****-****-****-1111","phone":"+** ** **** **58"}',
    },
    {
      name: "non-ASCII text around a match is kept byte for byte",
      rules: ALL_DETECTORS,
      input: "Grüße von zoë@example.com → jörg@example.de ✓",
      expected: "Grüße von z***@example.com → j***@example.de ✓",
    },
    {
      name: "email: internationalised address keeps its first character whole",
      rules: [{ detect: "email" }],
      input: "élodie@bücher.de",
      expected: "é***@bücher.de",
    },
    {
      name: "plain values pass untouched",
      rules: ALL_DETECTORS,
      input: "order 12345678901 shipped 2026-11-22, total 199.99",
      expected: "order 12345678901 shipped 2026-11-22, total 199.99",
    },
    { name: "a detector that is not configured does nothing", rules: [{ detect: "email" }], input: "4111111111111111", expected: "4111111111111111" },
  ];

  it.each(cases)("$name", ({ rules, input, expected }) => {
    expect(maskText(rules, input)).toBe(expected);
  });

  it("counts one masked value per changed value, however many matches it holds", () => {
    const masker = maskerFor(ALL_DETECTORS, [textField("a"), textField("b"), textField("c"), textField("d")]);
    const out = masker.mask([
      Buffer.from("ann@example.com and bob@example.com"),
      Buffer.from("nothing here"),
      null,
      Buffer.from("4111111111111111"),
    ]);
    expect(asText(out.values)).toEqual(["a***@example.com and b***@example.com", "nothing here", null, "****-****-****-1111"]);
    expect(out.masked).toBe(2);
  });

  it("looks at text-format values of any type (an int8 holding a card number)", () => {
    const masker = maskerFor([{ detect: "credit-card" }], [textField("n", INT8)]);
    const out = masker.mask([Buffer.from("4111111111111111")]);
    expect(asText(out.values)).toEqual(["****-****-****-1111"]);
  });

  it("keeps invalid UTF-8 bytes outside a match unchanged", () => {
    const masker = maskerFor([{ detect: "email" }], [textField("raw")]);
    const input = Buffer.concat([Buffer.from([0xff, 0xc3]), Buffer.from(" ann@example.com "), Buffer.from([0xa0])]);
    const [value] = masker.mask([input]).values;
    expect(value).toEqual(Buffer.concat([Buffer.from([0xff, 0xc3]), Buffer.from(" a***@example.com "), Buffer.from([0xa0])]));
  });

  it("returns the input array itself when no value changed", () => {
    const masker = maskerFor(ALL_DETECTORS, [textField("a")]);
    const values = [Buffer.from("hello world")];
    const out = masker.mask(values);
    expect(out.values).toBe(values);
    expect(out.masked).toBe(0);
  });
});

describe("binary format", () => {
  it.each([
    { type: "text", oid: TEXT },
    { type: "varchar", oid: VARCHAR },
    { type: "bpchar", oid: BPCHAR },
    { type: "name", oid: NAME },
  ])("detectors and column rules apply to binary $type (its bytes are the text)", ({ oid }) => {
    const masker = maskerFor([{ column: "secret" }, { detect: "email" }], [binaryField("note", oid), binaryField("secret", oid)]);
    const out = masker.mask([Buffer.from("mail ann@example.com"), Buffer.from("hunter2")]);
    expect(asText(out.values)).toEqual(["mail a***@example.com", "***"]);
    expect(out.masked).toBe(2);
  });

  it.each([
    { type: "int4", oid: INT4 },
    { type: "int8", oid: INT8 },
    { type: "jsonb", oid: JSONB },
    { type: "date", oid: DATE },
  ])("a column rule on binary $type replaces the value with NULL and counts it", ({ oid }) => {
    const masker = maskerFor([{ column: "secret" }], [binaryField("secret", oid), binaryField("other", oid)]);
    const out = masker.mask([Buffer.from([0, 0, 0, 42]), Buffer.from([0, 0, 0, 7])]);
    expect(out.values[0]).toBeNull();
    expect(out.values[1]).toEqual(Buffer.from([0, 0, 0, 7]));
    expect(out.masked).toBe(1);
  });

  it("detectors skip binary values of other types", () => {
    const masking = compileMasking(ALL_DETECTORS);
    // Binary jsonb is a version byte and text, binary int8 is 8 raw bytes: neither is scanned.
    expect(masking.forResult([binaryField("doc", JSONB), binaryField("n", INT8)])).toBeUndefined();

    const masker = maskerFor(ALL_DETECTORS, [binaryField("doc", JSONB), textField("note")]);
    const jsonb = Buffer.concat([Buffer.from([1]), Buffer.from('{"e":"ann@example.com"}')]);
    const out = masker.mask([jsonb, Buffer.from("ann@example.com")]);
    expect(out.values[0]).toBe(jsonb);
    expect(asText([out.values[1]!])).toEqual(["a***@example.com"]);
    expect(out.masked).toBe(1);
  });
});

describe("no work when no rule applies", () => {
  it("forResult returns undefined without rules", () => {
    expect(compileMasking([]).forResult([textField("email"), textField("card_number")])).toBeUndefined();
  });

  it("forResult returns undefined when no column rule matches and no detector is configured", () => {
    const masking = compileMasking([{ column: "email" }, { column: "*_card" }]);
    expect(masking.forResult([textField("id", INT4), textField("name"), binaryField("amount", INT8)])).toBeUndefined();
    expect(masking.forResult([])).toBeUndefined();
  });

  it("creates a RowMasker only when some column has an action", () => {
    const masking = compileMasking([{ column: "email" }]);
    expect(masking.forResult([textField("id", INT4)])).toBeUndefined();
    // The column rule matches case-insensitively and replaces that column whole (no detector named),
    // leaving the other alone.
    const out = masking.forResult([textField("id", INT4), textField("Email")])!.mask([Buffer.from("7"), Buffer.from("ann@example.com")]);
    expect(asText(out.values)).toEqual(["7", "***"]);
    expect(out.masked).toBe(1);
  });

  it("does not decode a value no detector can match", () => {
    const masker = maskerFor(ALL_DETECTORS, [textField("note"), textField("n", INT4)]);
    const toString = vi.spyOn(Buffer.prototype, "toString");
    // No '@', no '+', too few digits for a card, no two capitals for an IBAN.
    const out = masker.mask([Buffer.from("shipped on 2026-11-22, all good"), Buffer.from("42")]);
    expect(out.masked).toBe(0);
    expect(toString).not.toHaveBeenCalled();
  });

  it("does not decode values for a column rule", () => {
    const masker = maskerFor([{ column: "email" }], [textField("email")]);
    const toString = vi.spyOn(Buffer.prototype, "toString");
    expect(masker.mask([Buffer.from("ann@example.com")]).masked).toBe(1);
    expect(toString).not.toHaveBeenCalled();
  });
});

describe("masking a DataRow frame without decoding it (the relay's path)", () => {
  const fields = [textField("id", INT4), textField("email"), binaryField("secret_n", INT8), textField("note"), binaryField("blob", 17), textField("short")];
  const rules: MaskRule[] = [{ column: "email" }, { column: "secret_*" }, ...ALL_DETECTORS];
  const rows: (string | null)[][] = [
    ["1", "ann@example.com", "\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0007", "call +44 20 7946 0958 or mail bob@example.org", "abc", "x"],
    ["2", null, null, null, null, null],
    ["3", "", "", "", "", ""],
    ["40000", "b@c.de", "12345678", "card 4111 1111 1111 1111 ok", "4111111111111111", "12345"],
    ["5", "x", "y", "nothing to see here", "z", "a@b.c"],
  ];

  it("gives what decode, mask and encode give, with the same count, for every row", () => {
    const masker = maskerFor(rules, fields);
    const counts = { masked: -1 };
    for (const row of rows) {
      const frame = encodeDataRow(row.map((v) => (v === null ? null : Buffer.from(v, "latin1"))));
      const expected = masker.mask(decodeDataRow(frame));
      const out = masker.maskFrame(frame, counts);
      expect(out.equals(encodeDataRow(expected.values as (Buffer | null)[])), JSON.stringify(row)).toBe(true);
      expect(counts.masked).toBe(expected.masked);
      expect(decodeDataRow(out).length).toBe(fields.length);
    }
  });

  it("returns the frame itself, not a copy, when nothing in it can match", () => {
    const masker = maskerFor([{ detect: "email" }, { detect: "credit-card" }], [textField("id", INT4), textField("balance", INT4), textField("filler", BPCHAR)]);
    const frame = encodeDataRow([Buffer.from("17"), Buffer.from("-4200"), Buffer.from(" ".repeat(84))]);
    const counts = { masked: -1 };
    expect(masker.maskFrame(frame, counts)).toBe(frame);
    expect(counts.masked).toBe(0);
  });
});
