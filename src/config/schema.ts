import { z } from "zod";
import { CronExpressionParser } from "cron-parser";
import { parseApproverEntry, parseGroupOnlyEntry, slackGroupsNamed } from "./approver-entry.js";
import { parseDuration } from "./duration.js";
// Pure validation (no parser is loaded): the rule names live with the classifier that applies them.
import { BASELINE_SQL_RULES, sqlRuleProblem } from "../rules/sql-classifier.js";
import { shellRuleProblem } from "../rules/shell-classifier.js";

/** `30m`, `2h`, `1d` → milliseconds; the message names what was wrong. */
const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(text)} is not a duration like 30m, 2h, 1d` });
    return z.NEVER;
  }
  return ms;
});

/** A `:port` suffix, if any, must be a TCP port (the regexes only check for 1–5 digits). */
const portInRange = (text: string) => {
  const port = /:(\d{1,5})$/.exec(text);
  return port === null || Number(port[1]) <= 65535;
};

const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, { message: "expected host:port, like 0.0.0.0:3000" })
  .refine(portInRange, { message: "port must be at most 65535" });

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s/]+)(:\d{1,5})?$/, {
    message: "expected host or host:port, like db-gw.example.com:15432",
  })
  .refine(portInRange, { message: "port must be at most 65535" });

/** `127.0.0.1:3000`, `[::1]:3000`, `localhost:3000`: reachable from this machine only. */
export const isLoopbackListen = (address: string) => /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]|localhost):\d{1,5}$/.test(address);

const nonEmpty = z.string().min(1, { message: "must not be empty" });

/** A seal key: an id (kept with what it sealed, so keys can be rotated) and base64 of 32 random bytes. */
const sealKey = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, { message: "expected a key id of letters, digits, '.', '_' or '-' (like k1)" }),
  key: z.string().refine((text) => /^[A-Za-z0-9+/]+={0,2}$/.test(text.trim()) && Buffer.from(text.trim(), "base64").length === 32, {
    message: "expected base64 of 32 random bytes (openssl rand -base64 32)",
  }),
});

const BYTE_UNITS: Record<string, number> = { "": 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** A size in bytes: a number, or text like `256MiB`, `64KiB`, `1GiB`, `500MB`. */
const byteSize = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const match = typeof value === "number" ? undefined : /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = match ? BYTE_UNITS[match[2]!.toLowerCase()] : 1;
  const bytes = typeof value === "number" ? value : match && unit !== undefined ? Math.floor(Number(match[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} is not a size like 256MiB, 64KiB or 1GiB` });
    return z.NEVER;
  }
  return bytes;
});

const regexText = z.string().refine(
  (text) => {
    try {
      new RegExp(text);
      return true;
    } catch {
      return false;
    }
  },
  { message: "is not a valid regular expression" },
);

const timezone = z.string().refine(
  (zone) => {
    try {
      new Intl.DateTimeFormat("en-US", { timeZone: zone });
      return true;
    } catch {
      return false;
    }
  },
  { message: "is not an IANA time zone like UTC or Europe/Berlin" },
);

const cron = z.string().refine(
  (expression) => {
    // cron-parser accepts "" (every minute) and fills missing leading fields ("0 9 * *" runs every
    // minute of the 9th): demand the 5 fields (6 with seconds) or an @-macro such as @daily.
    const text = expression.trim();
    const fields = text.split(/\s+/).length;
    if (!text.startsWith("@") && (fields < 5 || fields > 6)) return false;
    try {
      CronExpressionParser.parse(expression);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'is not a cron expression like "0 9 * * *"' },
);

const url = (protocols: string[], example: string) =>
  z.string().refine(
    (text) => {
      try {
        return protocols.includes(new URL(text).protocol);
      } catch {
        return false;
      }
    },
    { message: `is not a URL like ${example}` },
  );

/** The part of an email after the `@`: `example.com`, compared whole (no wildcards, no subdomains). */
const emailDomain = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i, {
    message: "expected an email domain like example.com (no @, no wildcard)",
  })
  .transform((domain) => domain.toLowerCase());

/**
 * A person or a group in policy: an email, `slack:<id>`, `teams:<id>`, a plain Slack user id,
 * `group:<OIDC group>`, `slack-group:<Slack user group id>` or `@<Slack handle>` (see approver-entry.ts).
 */
const approver = nonEmpty.superRefine((entry, ctx) => {
  const parsed = parseApproverEntry(entry);
  if ("problem" in parsed) ctx.addIssue({ code: "custom", message: parsed.problem });
});

/** `console.allow.groups`: groups only (people are listed by email and domain). */
const groupEntry = nonEmpty.superRefine((entry, ctx) => {
  const parsed = parseGroupOnlyEntry(entry);
  if ("problem" in parsed) ctx.addIssue({ code: "custom", message: parsed.problem });
});

/** Shell rules (SSH targets): regexes over the command line, checked here so a typo fails at start. */
const shellRule = nonEmpty.superRefine((entry, ctx) => {
  const problem = shellRuleProblem(entry);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});
const shellVerdict = z.enum(["allow", "review", "block"]);
const commandRules = z.strictObject({
  block: z.array(shellRule).default([]),
  review: z.array(shellRule).default([]),
  /** What cannot be checked before it runs (`$x f`, `… | sh`, `eval "$y"`). */
  unverifiable: shellVerdict.default("review"),
  /** Starting an interactive shell, whose typed lines are checked only best-effort. */
  shell: shellVerdict.default("review"),
});

/** SFTP rules (SSH targets): regexes over the paths a request changes. */
const fileRules = z.strictObject({
  block: z.array(shellRule).default([]),
  review: z.array(shellRule).default([]),
});

/** SQL rules: built-in names (checked for typos) or regexes. */
const sqlRule = nonEmpty.superRefine((entry, ctx) => {
  const problem = sqlRuleProblem(entry);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});
const sqlCommandRules = z.strictObject({
  block: z.array(sqlRule).default([]),
  review: z.array(sqlRule).default([]),
  /** The verdict for what cannot be read before it runs (EXECUTE of built text, other languages). */
  unverifiable: z.enum(["allow", "review", "block"]).default("review"),
});

const maskRule = z.union([
  z.strictObject({ column: nonEmpty }),
  z.strictObject({ detect: z.enum(["email", "credit-card", "iban", "phone"]) }),
], { error: "expected { column: <name> } or { detect: email | credit-card | iban | phone }" });

const targetName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, { message: "expected lower-case letters, digits, '.', '_' or '-' (at most 63)" });

const weekday = z.enum(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], { error: "expected a day: mon, tue, wed, thu, fri, sat or sun" });
const clockTime = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, { message: 'expected a time of day like "09:00" (24-hour clock; "24:00" ends at midnight)' });

/**
 * An auto-approval rule (`targets[].autoApprove[]`): a request is approved at once, by the rule,
 * when every condition it sets holds at request time. See src/broker/auto-approval.ts.
 */
const autoApproveRule = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, { message: "expected a rule name of lower-case letters, digits, '.', '_' or '-', like on-call-readonly" }),
    /** Who the rule approves: people and groups, named as approvers are. */
    who: z.array(approver).min(1, { message: "names nobody: list the people or groups this rule approves" }),
    /** Weekly hours in a time zone; absent: any time. */
    when: z
      .strictObject({
        days: z.array(weekday).min(1, { message: "names no day" }).default(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
        from: clockTime,
        to: clockTime,
        timezone: timezone,
      })
      .refine((w) => w.to > w.from, { message: 'to must be later than from on the same day (a window past midnight is two rules, or ends at "24:00")', path: ["to"] })
      .optional(),
    /** The longest duration the rule approves; longer requests wait for an approver. */
    maxDuration: duration.optional(),
    /** The requester must be on call now in this schedule (their verified email is the on-call user's). */
    onCall: z
      .strictObject({
        provider: z.enum(["pagerduty", "opsgenie"], { error: 'provider must be "pagerduty" or "opsgenie"' }),
        schedule: nonEmpty,
        /** PagerDuty escalation levels that count (1 = first responder); absent: any level. */
        levels: z.array(z.number().int().min(1, { message: "escalation levels start at 1" })).min(1, { message: "names no level" }).optional(),
      })
      .optional(),
  });

const targetCommon = {
  name: targetName,
  approvers: z.array(approver).min(1, { message: "needs at least one approver" }),
  /** Who may request the target, people and groups; absent: everyone who reaches the bot. */
  requesters: z.array(approver).min(1, { message: "names nobody: list people or groups, or leave requesters out (then everyone may request)" }).optional(),
  approvals: z.number().int().min(1).optional(),
  maxDuration: duration.optional(),
  reasonPattern: regexText.optional(),
  /** An approval counts only after the approver completes a fresh OIDC login (needs `oidc:`). */
  stepUp: z.boolean().default(false),
  /** Statements and commands the proxy holds for review (the `commands.review` rules, SFTP file changes). */
  review: z
    .strictObject({
      /** Distinct approvers (never the session's owner) that must approve a held statement before it runs. */
      approvals: z.number({ error: "expected a whole number of approvals, at least 1" }).int({ error: "expected a whole number of approvals, at least 1" }).min(1, { error: "expected a whole number of approvals, at least 1" }).default(1),
    })
    .prefault({}),
  /**
   * Break-glass: the people listed (named as approvers are) may take the target at once with
   * `request <target> <duration> --break-glass <reason>`; the grant is announced loudly and waits for
   * an approver's review.
   */
  breakGlass: z
    .strictObject({
      allow: z.array(approver).min(1, { message: "names nobody: list who may break the glass (emails or chat ids, as approvers are named)" }),
      /** A Slack channel id that also gets the loud message (besides the approval channel). */
      alertChannel: z.string().regex(/^[CG][A-Z0-9]{2,}$/, { message: "expected a Slack channel id like C0SECURITY" }).optional(),
    })
    .optional(),
  /** Auto-approval rules, tried in order at request time; the first whose every condition holds approves. */
  autoApprove: z.array(autoApproveRule).optional(),
};

const postgresTarget = z.strictObject({
  ...targetCommon,
  kind: z.literal("postgres"),
  upstream: url(["postgres:", "postgresql:"], "postgres://user:password@host:5432/db"),
  // Without `commands`, the baseline; with it, exactly the rules it lists.
  commands: sqlCommandRules.default({
    block: [...BASELINE_SQL_RULES.block],
    review: [...BASELINE_SQL_RULES.review],
    unverifiable: BASELINE_SQL_RULES.unverifiable,
  }),
  mask: z.array(maskRule).default([]),
  /**
   * What each statement's record keeps of its result (issue 16): the rows as the client received
   * them (masked), up to `rows` rows and `bytes` bytes of values; `0` (or `rows: 0`) keeps nothing.
   */
  record: z
    .union([
      z.literal(0).transform(() => ({ rows: 0, bytes: 0 })),
      z.strictObject({
        rows: z.number({ error: "expected a whole number of rows (0: keep none)" }).int().min(0, { message: "expected a whole number of rows (0: keep none)" }).default(100),
        bytes: z.union([z.literal(0), byteSize]).default(64 * 1024),
      }),
    ], { error: "expected { rows: 100, bytes: 64KiB } or 0 (keep no result rows)" })
    .default({ rows: 100, bytes: 64 * 1024 }),
});

const sshTarget = z.strictObject({
  ...targetCommon,
  kind: z.literal("ssh"),
  upstream: url(["ssh:"], "ssh://deploy@10.0.0.6:22"),
  privateKeyFile: nonEmpty,
  hostKey: z.string().regex(/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+/, {
    message: 'expected a pinned host key like "ssh-ed25519 AAAA…"',
  }),
  commands: commandRules.prefault({}),
  files: fileRules.prefault({}),
  allowPortForwarding: z.boolean().default(false),
  allowAgentForwarding: z.boolean().default(false),
});

const target = z.discriminatedUnion("kind", [postgresTarget, sshTarget], {
  error: 'kind must be "postgres" or "ssh"',
});

export const configSchema = z
  .strictObject({
    http: z.strictObject({ listen: listenAddress.default("0.0.0.0:3000") }).prefault({}),
    dataDir: nonEmpty.default("./data"),
    database: url(["postgres:", "postgresql:"], "postgres://user@host:5432/jitgate").optional(),
    redis: url(["redis:", "rediss:", "unix:"], "redis://127.0.0.1:6379").optional(),
    /**
     * Prefix of every Redis key and channel. Absent: `jitgate:<deployment id>` (`jitgate-demo:<id>`
     * in demo mode), so deployments on one Redis keep apart without anyone choosing names; see
     * `redisPrefixOf`.
     */
    redisPrefix: nonEmpty.optional(),
    log: z
      .strictObject({ level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info") })
      .prefault({}),
    slack: z
      .strictObject({
        botToken: nonEmpty,
        /** Required in HTTP mode; Socket Mode (appToken set) does not sign requests. */
        signingSecret: nonEmpty.optional(),
        appToken: nonEmpty.optional(),
        apiUrl: url(["http:", "https:"], "https://slack.com/api/").optional(),
        command: z.string().regex(/^\/[a-z0-9_-]+$/, { message: "expected a slash command like /access" }).default("/access"),
        approvalChannel: nonEmpty,
        digestChannel: nonEmpty.optional(),
        /**
         * How often the Slack user groups that policy names (`slack-group:…`, `@…`) are fetched
         * again (usergroups.list, usergroups.users.list; needs the usergroups:read scope). A member
         * list older than three times this counts for nobody.
         */
        userGroupsRefresh: z
          .string()
          .transform((text, ctx) => {
            const ms = parseDuration(text);
            if (ms === undefined || ms < 60_000) {
              ctx.addIssue({ code: "custom", message: `${JSON.stringify(text)} is not a duration of at least 1m (Slack rate-limits usergroups.users.list)` });
              return z.NEVER;
            }
            return ms;
          })
          .prefault("5m"),
      })
      .optional(),
    teams: z
      .strictObject({
        appId: nonEmpty.optional(),
        appPassword: nonEmpty.optional(),
        tenantId: nonEmpty.optional(),
        serviceUrl: url(["http:", "https:"], "https://smba.trafficmanager.net/teams/").default(
          "https://smba.trafficmanager.net/teams/",
        ),
        approvalConversation: nonEmpty,
        /** Where the daily digest goes in Teams (a channel conversation id); absent → no Teams digest. */
        digestConversation: nonEmpty.optional(),
      })
      .optional(),
    proxy: z
      .strictObject({
        postgres: z
          .strictObject({
            listen: listenAddress.default("0.0.0.0:15432"),
            publicAddress: hostPort.optional(),
            tls: z
              .strictObject({
                cert: nonEmpty,
                key: nonEmpty,
                /**
                 * Where users keep the private CA's certificate that signed `cert`, on their own
                 * machines: connection lines name it as `sslrootcert`. Absent: `cert` is from a CA
                 * the users' systems trust, and lines say `sslrootcert=system` (libpq 16+).
                 */
                ca: nonEmpty.optional(),
              })
              .optional(),
            /**
             * Accept an OIDC ID token as a password over a connection that is not TLS (local use and
             * tests only): a token is a bearer secret that anyone on the path could replay.
             */
            allowPlaintextTokens: z.boolean().default(false),
            maxMessageSize: z.number().int().min(1024).default(64 * 1024 * 1024),
          })
          .optional(),
        ssh: z
          .strictObject({
            listen: listenAddress.default("0.0.0.0:2222"),
            publicAddress: hostPort.optional(),
            hostKeyFile: nonEmpty.default("./data/ssh_host_ed25519_key"),
          })
          .optional(),
        /**
         * Failed logins from one address (IPv6: its /64), counted in Redis across both proxies and
         * every replica: from `threshold` failures within `window`, each further try from there waits
         * `delay`, doubled per failure up to `maxDelay`, and the burst is audited.
         */
        loginFailures: z
          .strictObject({
            threshold: z.number().int().min(1).default(5),
            window: duration.prefault("15m"),
            delay: duration.prefault("1s"),
            maxDelay: duration.prefault("30s"),
          })
          .prefault({}),
      })
      .prefault({}),
    defaults: z
      .strictObject({
        maxDuration: duration.prefault("8h"),
        approvals: z.number().int().min(1).default(1),
        requestTtl: duration.prefault("1h"),
        reviewTimeout: duration.prefault("10m"),
        reminderBefore: duration.prefault("10m"),
        /** The time zone of `request … from 22:00` when the requester's chat platform does not say theirs. */
        timezone: timezone.default("UTC"),
      })
      .prefault({}),
    digest: z
      .strictObject({ cron: cron.default("0 9 * * *"), timezone: timezone.default("UTC") })
      .prefault({}),
    /** The organisation's OpenID Connect provider: `jitgate login`, tokens at the proxies, step-up approval, console login. */
    oidc: z
      .strictObject({
        issuer: url(["https:", "http:"], "https://login.example.com/"),
        clientId: nonEmpty,
        clientSecret: nonEmpty.optional(),
        /** Where the provider sends the browser back: `https://<gateway>/oidc/callback`. */
        redirectUrl: url(["https:", "http:"], "https://jitgate.example.com/oidc/callback"),
        /** How recent the login behind a step-up approval must be. */
        stepUpMaxAge: duration.prefault("5m"),
      })
      .optional(),
    /** The local console at /console: a chat view, the audit pages and session replay in a browser. */
    console: z
      .strictObject({
        enabled: z.boolean().default(false),
        /** People of the console's chat in demo mode (they pick themselves; outside demo mode people log in with OIDC). */
        users: z
          .array(z.strictObject({ id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,31}$/, { message: "expected a short lower-case id like dev" }), name: nonEmpty, email: z.email() }))
          .default([]),
        /** The console's approval channel name. */
        channel: nonEmpty.default("access-requests"),
        /**
         * Who may sign in to the console and the audit pages outside demo mode: verified emails of
         * these domains, these addresses, and members of these groups. Required there (nobody is
         * admitted without it).
         */
        allow: z
          .strictObject({
            domains: z.array(emailDomain).default([]),
            emails: z.array(z.email().transform((e) => e.toLowerCase())).default([]),
            /** Members of these groups: `group:<OIDC group>` (the sign-in's own claim), `slack-group:<id>`, `@<handle>`. */
            groups: z.array(groupEntry).default([]),
          })
          .refine((allow) => allow.domains.length + allow.emails.length + allow.groups.length > 0, {
            message: "admits nobody: list email domains (domains: [example.com]), addresses (emails: [ann@example.com]) or groups (groups: [group:dba])",
          })
          .optional(),
      })
      .prefault({}),
    /** Demo mode: a PGlite-backed PostgreSQL target served on `demo.postgresListen`, seeded with an `orders` table. */
    demo: z
      .strictObject({
        enabled: z.boolean().default(false),
        postgresListen: listenAddress.default("127.0.0.1:15499"),
      })
      .prefault({}),
    /** The local write-ahead audit journal: statements are recorded there, then shipped to session_statements. */
    audit: z
      .strictObject({
        journal: z
          .strictObject({
            /** Absent: `<dataDir>/journal`. One directory per gateway process (it is locked). */
            dir: nonEmpty.optional(),
            fsync: z
              .enum(["always", "interval"], {
                error: 'must be "always" (each statement waits for its group\'s fdatasync) or "interval" (it waits for the write; fdatasync every intervalMs)',
              })
              .default("interval"),
            intervalMs: z.number({ error: "must be a number of milliseconds" }).int().min(1, { message: "must be at least 1 ms" }).max(10_000, { message: "must be at most 10000 ms (a machine crash loses up to this much)" }).default(5),
            maxBytes: byteSize
              .prefault("256MiB")
              .refine((bytes) => bytes >= 16 * 1024, { message: "must be at least 16KiB" }),
          })
          .prefault({}),
        /**
         * The key-encryption key that seals the originals of masked values in recorded results
         * (issue 16): `{ id: k2, key: ${JITGATE_SEAL_KEY} }`, the key base64 of 32 bytes. Absent:
         * originals are not kept at all.
         */
        sealKey: sealKey.optional(),
        /** Earlier seal keys: still open the sessions sealed under them, never seal anything new. */
        retiredSealKeys: z.array(sealKey).default([]),
      })
      .prefault({})
      .superRefine((audit, ctx) => {
        const ids = [audit.sealKey, ...audit.retiredSealKeys].filter((k) => k !== undefined).map((k) => k.id);
        const twice = ids.find((id, i) => ids.indexOf(id) !== i);
        if (twice !== undefined) ctx.addIssue({ code: "custom", path: ["retiredSealKeys"], message: `names the seal key id "${twice}" twice: every key needs an id of its own` });
      }),
    targets: z.array(target).default([]),
    /** On-call providers that auto-approval rules ask (`autoApprove[].onCall`). */
    onCall: z
      .strictObject({
        pagerduty: z
          .strictObject({
            /** A REST API key (read-only is enough): sent as `Authorization: Token token=…`. */
            token: nonEmpty,
            apiUrl: url(["https:", "http:"], "https://api.pagerduty.com").default("https://api.pagerduty.com"),
          })
          .optional(),
        opsgenie: z
          .strictObject({
            /** An API key of an integration allowed to read schedules: sent as `Authorization: GenieKey …`. */
            apiKey: nonEmpty,
            apiUrl: url(["https:", "http:"], "https://api.opsgenie.com (https://api.eu.opsgenie.com in the EU)").default("https://api.opsgenie.com"),
          })
          .optional(),
      })
      .optional(),
    /**
     * Who reviews the evidence: these people (named as an approver list names them) see every
     * target's requests, sessions, statements and recordings in the audit pages, not only their own
     * and those of the targets they approve.
     */
    auditors: z.array(approver).default([]),
  })
  .superRefine(
    (config, ctx) => {
      // Runs even when other settings are wrong (see `when`), so `config` may be partly invalid.
      const targets: unknown[] = Array.isArray(config.targets) ? config.targets : [];
      const seen = new Map<string, number>();
      targets.forEach((t, index) => {
        const name = (t as { name?: unknown } | null)?.name;
        if (typeof name !== "string") return;
        const first = seen.get(name);
        if (first !== undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["targets", index, "name"],
            message: `"${name}" is already the name of targets[${first}]`,
          });
        } else seen.set(name, index);
        // A quorum larger than the approver list can never be met: every request would time out.
        const target = t as { approvals?: unknown; approvers?: unknown };
        const defaults = config.defaults as { approvals?: unknown } | undefined;
        const quorum = typeof target.approvals === "number" ? target.approvals : defaults?.approvals;
        // A group counts for any number of people: the check is for lists of people only.
        const namesGroups = Array.isArray(target.approvers) && target.approvers.some((e) => typeof e === "string" && /^(group:|slack-group:|@)/.test(e.trim()));
        if (Array.isArray(target.approvers) && target.approvers.length > 0 && !namesGroups && typeof quorum === "number" && quorum > target.approvers.length) {
          ctx.addIssue({
            code: "custom",
            path: ["targets", index, typeof target.approvals === "number" ? "approvals" : "approvers"],
            message: `a quorum of ${quorum} can never be met by ${target.approvers.length} approver${target.approvers.length === 1 ? "" : "s"}`,
          });
        }
        const review = (t as { review?: { approvals?: unknown } } | null)?.review;
        if (Array.isArray(target.approvers) && target.approvers.length > 0 && typeof review?.approvals === "number" && review.approvals > target.approvers.length) {
          ctx.addIssue({
            code: "custom",
            path: ["targets", index, "review", "approvals"],
            message: `held statements would wait for ${review.approvals} approvals that ${target.approvers.length} approver${target.approvers.length === 1 ? "" : "s"} can never give`,
          });
        }
      });
      // Auto-approval rules: unique names per target, a configured provider, levels only where the provider has them.
      const onCall = (config as { onCall?: { pagerduty?: unknown; opsgenie?: unknown } }).onCall;
      targets.forEach((t, index) => {
        const rules = (t as { autoApprove?: unknown } | null)?.autoApprove;
        if (!Array.isArray(rules)) return;
        const names = new Map<string, number>();
        rules.forEach((rule: unknown, r) => {
          const { name, onCall: ask } = (rule ?? {}) as { name?: unknown; onCall?: { provider?: unknown; levels?: unknown } };
          if (typeof name === "string") {
            if (names.has(name)) ctx.addIssue({ code: "custom", path: ["targets", index, "autoApprove", r, "name"], message: `"${name}" is already the name of autoApprove[${names.get(name)}]` });
            else names.set(name, r);
          }
          if (ask?.provider === "pagerduty" && !onCall?.pagerduty) {
            ctx.addIssue({ code: "custom", path: ["targets", index, "autoApprove", r, "onCall"], message: "asks PagerDuty, and onCall.pagerduty is not configured (its API token)" });
          }
          if (ask?.provider === "opsgenie" && !onCall?.opsgenie) {
            ctx.addIssue({ code: "custom", path: ["targets", index, "autoApprove", r, "onCall"], message: "asks Opsgenie, and onCall.opsgenie is not configured (its API key)" });
          }
          if (ask?.provider === "opsgenie" && ask.levels !== undefined) {
            ctx.addIssue({
              code: "custom",
              path: ["targets", index, "autoApprove", r, "onCall", "levels"],
              message: "Opsgenie schedules have no escalation levels: leave levels out (anyone on call in the schedule counts), or point the rule at the schedule of the level you mean",
            });
          }
        });
      });
      const oidc = config.oidc as unknown;
      targets.forEach((t, index) => {
        if ((t as { stepUp?: unknown } | null)?.stepUp === true && (oidc === undefined || oidc === null)) {
          ctx.addIssue({ code: "custom", path: ["targets", index, "stepUp"], message: "needs oidc: to be configured (approvers log in again there)" });
        }
      });
      // Outside demo mode nobody may pick who they are: the console's people log in with OIDC.
      const consoleSection = config.console as { enabled?: unknown } | undefined;
      const demo = config.demo as { enabled?: unknown } | undefined;
      if (consoleSection?.enabled === true && demo?.enabled !== true && (oidc === undefined || oidc === null)) {
        ctx.addIssue({ code: "custom", path: ["console", "enabled"], message: "needs oidc: outside demo mode (people log in to the console with OIDC)" });
      }
      // A login at the provider is not enough: the organisation says whose logins count (fail closed).
      if (consoleSection?.enabled === true && demo?.enabled !== true && (consoleSection as { allow?: unknown }).allow === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["console", "allow"],
          message:
            "is required outside demo mode: say whose sign-ins may use the console and the audit pages, like allow: { domains: [example.com] } (anyone else with an account at the provider is refused)",
        });
      }
      // Demo mode has no login (people pick themselves): its console must not be reachable from other machines.
      const http = config.http as { listen?: unknown } | undefined;
      if (demo?.enabled === true && typeof http?.listen === "string" && !isLoopbackListen(http.listen)) {
        ctx.addIssue({
          code: "custom",
          path: ["http", "listen"],
          message: `must be a loopback address (127.0.0.1:<port> or [::1]:<port>) in demo mode, where anyone who reaches the console can act as anyone (got "${http.listen}")`,
        });
      }
      // The demo target takes any password: only the gateway, on this machine, may reach it.
      const demoListen = (config.demo as { postgresListen?: unknown } | undefined)?.postgresListen;
      if (demo?.enabled === true && typeof demoListen === "string" && !isLoopbackListen(demoListen)) {
        ctx.addIssue({
          code: "custom",
          path: ["demo", "postgresListen"],
          message: `must be a loopback address (127.0.0.1:<port> or [::1]:<port>): the demo target accepts any password (got "${demoListen}")`,
        });
      }
      // An authenticated bot takes activities from one tenant only: which one must be said.
      const teams = config.teams as { appId?: unknown; tenantId?: unknown } | undefined;
      if (teams && typeof teams === "object" && teams.appId !== undefined && teams.tenantId === undefined) {
        ctx.addIssue({
          code: "custom",
          path: ["teams", "tenantId"],
          message: "is required when teams.appId is set: jitgate takes activities and people from this Microsoft Entra tenant only (the directory id, a GUID)",
        });
      }
      const slack = config.slack as { appToken?: unknown; signingSecret?: unknown } | undefined;
      if (slack && typeof slack === "object" && slack.appToken === undefined && slack.signingSecret === undefined) {
        ctx.addIssue({ code: "custom", path: ["slack", "signingSecret"], message: "is required in HTTP mode" });
      }
      // A Slack user group is known only through the Slack app: without slack:, it would name nobody.
      if (!slack || typeof slack !== "object") {
        const lists: { path: (string | number)[]; entries: unknown }[] = [
          ...targets.flatMap((t, index) => [
            { path: ["targets", index, "approvers"], entries: (t as { approvers?: unknown } | null)?.approvers },
            { path: ["targets", index, "requesters"], entries: (t as { requesters?: unknown } | null)?.requesters },
            { path: ["targets", index, "breakGlass", "allow"], entries: (t as { breakGlass?: { allow?: unknown } } | null)?.breakGlass?.allow },
            ...(Array.isArray((t as { autoApprove?: unknown } | null)?.autoApprove)
              ? ((t as { autoApprove: { who?: unknown }[] }).autoApprove.map((rule, r) => ({ path: ["targets", index, "autoApprove", r, "who"], entries: rule?.who })))
              : []),
          ]),
          { path: ["console", "allow", "groups"], entries: (consoleSection as { allow?: { groups?: unknown } } | undefined)?.allow?.groups },
          { path: ["auditors"], entries: (config as { auditors?: unknown }).auditors },
        ];
        for (const { path, entries } of lists) {
          if (!Array.isArray(entries)) continue;
          const named = slackGroupsNamed(entries.filter((e): e is string => typeof e === "string"));
          const first = [...named.ids].map((id) => `slack-group:${id}`).concat([...named.handles].map((h) => `@${h}`))[0];
          if (first !== undefined) {
            ctx.addIssue({ code: "custom", path, message: `${first} is a Slack user group, and slack: is not configured (jitgate learns Slack groups from the Slack app)` });
          }
        }
      }
    },
    // Report these together with every other mistake, not only once the rest is valid.
    { when: (payload) => typeof payload.value === "object" && payload.value !== null },
  );

/** The only configuration type in the code: what the schema yields. */
export type Config = z.output<typeof configSchema>;
export type TargetConfig = Config["targets"][number];
export type PostgresTargetConfig = Extract<TargetConfig, { kind: "postgres" }>;
export type SshTargetConfig = Extract<TargetConfig, { kind: "ssh" }>;
export type PolicyDefaults = Config["defaults"];

/** The configuration once the gateway knows its deployment: the Redis prefix is always set. */
export type DeployedConfig = Config & { redisPrefix: string };

/**
 * The Redis prefix: the configured one, or one of this deployment's own. Demo mode's differs from
 * a real deployment's, so a demo run beside a gateway on the same Redis never looks like one.
 */
export function redisPrefixOf(config: Pick<Config, "redisPrefix" | "demo">, deploymentId: string): string {
  return config.redisPrefix ?? `${config.demo.enabled ? "jitgate-demo" : "jitgate"}:${deploymentId}`;
}
