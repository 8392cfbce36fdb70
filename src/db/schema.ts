import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

const at = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

/**
 * This deployment's identity, made at its first start: one row (the check pins the key to true).
 * The default Redis prefix and every job carry it, so two deployments on one Redis keep apart.
 */
export const deployment = pgTable(
  "deployment",
  {
    singleton: boolean("singleton").primaryKey().default(true),
    id: text("id").notNull(),
    createdAt: at("created_at").notNull().defaultNow(),
    /** HMAC key of grant credential lookups and SCRAM salts (see broker/credentials.ts); made at first start. */
    credentialKey: text("credential_key"),
  },
  (t) => [check("deployment_singleton", sql`${t.singleton}`)],
);

/** A person, known by email and by any number of chat identities. */
export const people = pgTable("people", {
  id: text("id").primaryKey(),
  email: text("email").unique(),
  displayName: text("display_name").notNull(),
  createdAt: at("created_at").notNull().defaultNow(),
});

export const chatIdentities = pgTable(
  "chat_identities",
  {
    platform: text("platform", { enum: ["slack", "teams", "console", "oidc"] }).notNull(),
    externalId: text("external_id").notNull(),
    personId: text("person_id")
      .notNull()
      .references(() => people.id),
    email: text("email"),
    displayName: text("display_name"),
    updatedAt: at("updated_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.platform, t.externalId] }), index("chat_identities_person_idx").on(t.personId)],
);

/**
 * A person's groups from one source, as of its last refresh: `oidc` is the `groups` claim of
 * their latest sign-in (console, step-up, a token at a proxy), replaced whole at each one.
 */
export const personGroups = pgTable(
  "person_groups",
  {
    personId: text("person_id")
      .notNull()
      .references(() => people.id),
    source: text("source", { enum: ["oidc"] }).notNull(),
    groups: jsonb("groups").$type<string[]>().notNull(),
    refreshedAt: at("refreshed_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.personId, t.source] })],
);

/**
 * The Slack user groups policy names, with their members' Slack user ids, as last fetched in the
 * background (usergroups.list, usergroups.users.list). A person is in a group when one of their
 * Slack identities is among `members`.
 */
export const slackUserGroups = pgTable("slack_user_groups", {
  id: text("id").primaryKey(),
  handle: text("handle").notNull(),
  name: text("name").notNull(),
  members: jsonb("members").$type<string[]>().notNull(),
  refreshedAt: at("refreshed_at").notNull(),
});

/** Targets as last synced from the configuration; history keeps referring to removed ones. */
export const targets = pgTable("targets", {
  name: text("name").primaryKey(),
  kind: text("kind", { enum: ["postgres", "ssh"] }).notNull(),
  approvers: jsonb("approvers").$type<string[]>().notNull(),
  approvals: integer("approvals").notNull(),
  maxDurationMs: bigint("max_duration_ms", { mode: "number" }).notNull(),
  active: boolean("active").notNull().default(true),
  syncedAt: at("synced_at").notNull().defaultNow(),
});

export const requestStates = ["pending", "approved", "denied", "expired", "cancelled"] as const;
export type RequestState = (typeof requestStates)[number];

export const accessRequests = pgTable(
  "access_requests",
  {
    id: text("id").primaryKey(),
    /** `access` asks for a new grant; `extension` asks for more time on `grantId`. */
    kind: text("kind", { enum: ["access", "extension"] }).notNull().default("access"),
    target: text("target")
      .notNull()
      .references(() => targets.name),
    requesterId: text("requester_id")
      .notNull()
      .references(() => people.id),
    durationMs: bigint("duration_ms", { mode: "number" }).notNull(),
    reason: text("reason").notNull(),
    state: text("state", { enum: requestStates }).notNull().default("pending"),
    approvalsRequired: integer("approvals_required").notNull(),
    grantId: text("grant_id"),
    /** Where the request was made, so its events are rendered back there. */
    origin: text("origin").notNull().default("api"),
    createdAt: at("created_at").notNull(),
    timeoutAt: at("timeout_at").notNull(),
    decidedAt: at("decided_at"),
    /** A scheduled request (`from 22:00`): its grant is issued at this time, once approved. */
    startsAt: at("starts_at"),
    /** `--once`: the grant ends when its first session closes. */
    once: boolean("once").notNull().default(false),
    /** `--break-glass`: issued at once without approval, reviewed afterwards (`break_glass_reviews`). */
    breakGlass: boolean("break_glass").notNull().default(false),
  },
  (t) => [
    index("access_requests_state_idx").on(t.state, t.timeoutAt),
    index("access_requests_requester_idx").on(t.requesterId, t.state),
  ],
);

export const decisions = pgTable(
  "decisions",
  {
    id: text("id").primaryKey(),
    requestId: text("request_id")
      .notNull()
      .references(() => accessRequests.id),
    /** Who decided; null for an approval by an auto-approval rule (`rule`). */
    approverId: text("approver_id").references(() => people.id),
    verdict: text("verdict", { enum: ["approve", "deny"] }).notNull(),
    reason: text("reason"),
    /** The auto-approval rule (`targets[].autoApprove[].name`) that approved, when no person did. */
    rule: text("rule"),
    createdAt: at("created_at").notNull(),
  },
  // One decision per person per request: a double click cannot count twice towards the quorum.
  // Every decision is a person's or a rule's, never neither nor both.
  (t) => [
    uniqueIndex("decisions_one_per_person").on(t.requestId, t.approverId),
    check("decisions_by_person_or_rule", sql`(${t.approverId} is null) <> (${t.rule} is null)`),
  ],
);

export const grantStates = ["active", "expired", "revoked"] as const;
export type GrantState = (typeof grantStates)[number];

export const grants = pgTable(
  "grants",
  {
    id: text("id").primaryKey(),
    requestId: text("request_id")
      .notNull()
      .references(() => accessRequests.id),
    personId: text("person_id")
      .notNull()
      .references(() => people.id),
    target: text("target")
      .notNull()
      .references(() => targets.name),
    state: text("state", { enum: grantStates }).notNull().default("active"),
    startsAt: at("starts_at").notNull(),
    expiresAt: at("expires_at").notNull(),
    endedAt: at("ended_at"),
    endedBy: text("ended_by"),
    /** The grant ends when its first session closes (`--once`). */
    once: boolean("once").notNull().default(false),
  },
  (t) => [
    // At most one live grant per person and target: the proxy's login resolves to exactly one.
    uniqueIndex("grants_one_live_per_person_target")
      .on(t.personId, t.target)
      .where(sql`state = 'active'`),
    index("grants_state_expires_idx").on(t.state, t.expiresAt),
  ],
);

export const breakGlassReviewStates = ["open", "acknowledged", "flagged"] as const;

/**
 * The review of a break-glass grant: open until an approver of the target (not the holder)
 * acknowledges it or flags it as misuse. Reminded daily and listed in the digest while open.
 */
export const breakGlassReviews = pgTable(
  "break_glass_reviews",
  {
    id: text("id").primaryKey(),
    requestId: text("request_id")
      .notNull()
      .unique()
      .references(() => accessRequests.id),
    grantId: text("grant_id")
      .notNull()
      .references(() => grants.id),
    target: text("target")
      .notNull()
      .references(() => targets.name),
    requesterId: text("requester_id")
      .notNull()
      .references(() => people.id),
    state: text("state", { enum: breakGlassReviewStates }).notNull().default("open"),
    createdAt: at("created_at").notNull(),
    reviewedAt: at("reviewed_at"),
    reviewerId: text("reviewer_id").references(() => people.id),
    note: text("note"),
  },
  (t) => [index("break_glass_reviews_state_idx").on(t.state, t.createdAt)],
);

/**
 * The grant's secret, kept only as a SCRAM-SHA-256 verifier (RFC 5802 / RFC 7677): the proxy can run
 * a SCRAM exchange and check a password without the secret ever being stored. Deleted when the
 * grant ends.
 */
export const grantCredentials = pgTable(
  "grant_credentials",
  {
    grantId: text("grant_id")
      .primaryKey()
      .references(() => grants.id),
    login: text("login").notNull(),
    target: text("target").notNull(),
    salt: text("salt").notNull(),
    iterations: integer("iterations").notNull(),
    storedKey: text("stored_key").notNull(),
    serverKey: text("server_key").notNull(),
    /** HMAC-SHA256 of the secret under the deployment's credential key: how a password try finds its credential. */
    lookup: text("lookup").notNull(),
    createdAt: at("created_at").notNull(),
  },
  (t) => [index("grant_credentials_login_idx").on(t.login, t.target), uniqueIndex("grant_credentials_lookup_idx").on(t.lookup)],
);

export const sessions = pgTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    grantId: text("grant_id")
      .notNull()
      .references(() => grants.id),
    target: text("target").notNull(),
    personId: text("person_id")
      .notNull()
      .references(() => people.id),
    protocol: text("protocol", { enum: ["postgres", "ssh"] }).notNull(),
    clientAddress: text("client_address"),
    startedAt: at("started_at").notNull(),
    endedAt: at("ended_at"),
    summary: jsonb("summary").$type<Record<string, unknown>>(),
    recording: jsonb("recording").$type<unknown>(),
  },
  (t) => [index("sessions_grant_idx").on(t.grantId)],
);

/**
 * A PostgreSQL session's statement timeline. The row is written before the statement reaches the
 * target (the proxy refuses a statement it cannot record); the outcome columns are filled in after.
 */
export const sessionStatements = pgTable(
  "session_statements",
  {
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id),
    seq: integer("seq").notNull(),
    /** `simple` (Query), `extended` (Parse/Bind/Execute), `copy` */
    protocol: text("protocol").notNull(),
    kind: text("kind").notNull(),
    text: text("text").notNull(),
    /** Bind parameters, with values redacted where masking rules would hide them. */
    parameters: jsonb("parameters").$type<(string | null)[]>(),
    verdict: text("verdict", { enum: ["allow", "review", "block"] }).notNull(),
    rule: text("rule"),
    heldId: text("held_id"),
    startedAt: at("started_at").notNull(),
    durationMs: integer("duration_ms"),
    rows: integer("rows"),
    commandTag: text("command_tag"),
    error: text("error"),
  },
  (t) => [primaryKey({ columns: [t.sessionId, t.seq] })],
);

/**
 * What a statement returned, as the client received it (issue 16): the result's columns and its rows
 * (masked), up to the target's `record` caps. `data` is base64 of the rows as deflated JSON; `cut`
 * says the caps stopped it before `rowsTotal`. `sealed` holds the originals of the masked values of
 * the kept rows, AES-256-GCM under the session's data key (session_seal_keys): base64, never plain.
 */
export const statementResults = pgTable(
  "statement_results",
  {
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id),
    seq: integer("seq").notNull(),
    columns: jsonb("columns").$type<{ name: string; dataTypeID: number; format: number }[]>().notNull(),
    data: text("data").notNull(),
    rowsKept: integer("rows_kept").notNull(),
    rowsTotal: integer("rows_total").notNull(),
    cut: boolean("cut").notNull(),
    sealed: text("sealed"),
  },
  (t) => [primaryKey({ columns: [t.sessionId, t.seq] })],
);

/**
 * A session's data key, wrapped by the seal key `keyId` (audit.sealKey, or a retired one): what
 * opens its statements' sealed originals. Useless without the key, which only the configuration holds.
 */
export const sessionSealKeys = pgTable("session_seal_keys", {
  sessionId: text("session_id")
    .primaryKey()
    .references(() => sessions.id),
  keyId: text("key_id").notNull(),
  wrapped: text("wrapped").notNull(),
});

export const heldStatements = pgTable(
  "held_statements",
  {
    id: text("id").primaryKey(),
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id),
    grantId: text("grant_id")
      .notNull()
      .references(() => grants.id),
    text: text("text").notNull(),
    rule: text("rule").notNull(),
    state: text("state", { enum: ["held", "approved", "denied", "timed_out"] }).notNull().default("held"),
    decidedBy: text("decided_by"),
    /** Distinct approvals it needs to run (the target's `review.approvals` when it was held). */
    approvalsRequired: integer("approvals_required").notNull().default(1),
    createdAt: at("created_at").notNull(),
    decidedAt: at("decided_at"),
  },
  (t) => [index("held_statements_session_idx").on(t.sessionId)],
);

/** Each approver's decision on a held statement: one per approver, counted towards `approvalsRequired`. */
export const heldDecisions = pgTable(
  "held_decisions",
  {
    id: text("id").primaryKey(),
    heldId: text("held_id")
      .notNull()
      .references(() => heldStatements.id),
    approverId: text("approver_id")
      .notNull()
      .references(() => people.id),
    verdict: text("verdict", { enum: ["approve", "deny"] }).notNull(),
    createdAt: at("created_at").notNull(),
  },
  (t) => [uniqueIndex("held_decisions_once_idx").on(t.heldId, t.approverId)],
);

/**
 * A session's terminal recordings (asciicast v2), one per SSH channel that had a shell or a command.
 * Kept out of `sessions` so listing sessions never reads them.
 */
export const sessionRecordings = pgTable(
  "session_recordings",
  {
    sessionId: text("session_id")
      .notNull()
      .references(() => sessions.id),
    /** The channel's number within the session, from 1. */
    channel: integer("channel").notNull(),
    /** `shell`, `exec` */
    kind: text("kind").notNull(),
    /** The exec command, or the shell's terminal type. */
    title: text("title"),
    format: text("format").notNull().default("asciicast-v2"),
    cast: text("cast").notNull(),
    truncated: boolean("truncated").notNull().default(false),
    createdAt: at("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.sessionId, t.channel] })],
);

/** Public keys people registered (`key add`) to log in to the SSH proxy without the password. */
export const sshKeys = pgTable(
  "ssh_keys",
  {
    id: text("id").primaryKey(),
    personId: text("person_id")
      .notNull()
      .references(() => people.id),
    /** `SHA256:…` as OpenSSH prints it; one key belongs to one person. */
    fingerprint: text("fingerprint").notNull().unique(),
    /** `ssh-ed25519 AAAA…` (type and base64), without the comment. */
    publicKey: text("public_key").notNull(),
    comment: text("comment"),
    createdAt: at("created_at").notNull(),
  },
  (t) => [index("ssh_keys_person_idx").on(t.personId)],
);

/** Where a request's messages live in chat, so any replica can update or reply after a restart. */
export const chatMessages = pgTable(
  "chat_messages",
  {
    id: text("id").primaryKey(),
    requestId: text("request_id")
      .notNull()
      .references(() => accessRequests.id),
    platform: text("platform").notNull(),
    channel: text("channel").notNull(),
    messageId: text("message_id").notNull(),
    threadId: text("thread_id"),
    /** root, reply, dm, card, or `held:<held statement id>` */
    role: text("role").notNull(),
    createdAt: at("created_at").notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("chat_messages_platform_message").on(t.platform, t.channel, t.messageId),
    index("chat_messages_request_idx").on(t.requestId, t.role),
  ],
);

/**
 * Append-only, hash-chained audit log: `hash = sha256(prevHash ‖ canonical(row))`. UPDATE, DELETE and
 * TRUNCATE are refused by triggers (migrations/0001_audit_append_only.sql).
 */
export const auditEvents = pgTable(
  "audit_events",
  {
    seq: bigint("seq", { mode: "number" }).primaryKey(),
    at: at("at").notNull(),
    kind: text("kind").notNull(),
    actorId: text("actor_id"),
    target: text("target"),
    requestId: text("request_id"),
    grantId: text("grant_id"),
    sessionId: text("session_id"),
    data: jsonb("data").$type<Record<string, unknown>>().notNull(),
    prevHash: text("prev_hash").notNull(),
    hash: text("hash").notNull(),
  },
  (t) => [
    index("audit_events_at_idx").on(t.at),
    index("audit_events_actor_idx").on(t.actorId, t.at),
    index("audit_events_target_idx").on(t.target, t.at),
    index("audit_events_request_idx").on(t.requestId),
    // Search by event kind, and the kinds for the audit pages' search form (a loose index scan).
    index("audit_events_kind_idx").on(t.kind, t.at),
  ],
);

/**
 * Where the bot can reach a chat user proactively (a Teams 1:1 conversation): the conversation
 * reference the platform gave us, in the database so any replica can send the connection line.
 */
export const chatConversations = pgTable(
  "chat_conversations",
  {
    platform: text("platform").notNull(),
    /** The user's platform id (Teams `29:…`). */
    externalId: text("external_id").notNull(),
    conversationId: text("conversation_id").notNull(),
    serviceUrl: text("service_url").notNull(),
    tenantId: text("tenant_id"),
    /** The whole conversation reference as the platform's SDK builds it. */
    reference: jsonb("reference").$type<Record<string, unknown>>().notNull(),
    updatedAt: at("updated_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.platform, t.externalId] })],
);

/**
 * Step-up approvals (targets with `stepUp: true`): an Approve click opens one of these; the approval
 * is recorded only when the OIDC callback returns an ID token for the same person with a fresh
 * `auth_time`. In the database so the callback may land on any replica.
 */
export const stepUpChallenges = pgTable(
  "step_up_challenges",
  {
    /** The one-time id in the `/oidc/approve?challenge=…` link (random, unguessable). */
    id: text("id").primaryKey(),
    requestId: text("request_id")
      .notNull()
      .references(() => accessRequests.id),
    approverId: text("approver_id")
      .notNull()
      .references(() => people.id),
    /** Set when the approval waiting for the sign-in is of a held statement (in `requestId`'s thread), not of the request. */
    heldId: text("held_id").references(() => heldStatements.id),
    /** Set when the sign-in is for revealing sealed results: `<session id>#<seq>` (never an approval). */
    reveal: text("reveal"),
    /** The reason the auditor gave for that reveal: the sign-in completes this reveal with it, never one given afterwards. */
    revealReason: text("reveal_reason"),
    /** The OAuth `state`, PKCE verifier and nonce of the authorization request made for it. */
    state: text("state").unique(),
    codeVerifier: text("code_verifier"),
    nonce: text("nonce"),
    createdAt: at("created_at").notNull(),
    expiresAt: at("expires_at").notNull(),
    /** When the fresh login came back (set once: the link cannot be used twice). */
    completedAt: at("completed_at"),
    authTime: at("auth_time"),
  },
  (t) => [index("step_up_challenges_request_idx").on(t.requestId)],
);

/**
 * The console's chat (the third ChatPort): every message the gateway posted, updated, replied or
 * sent directly, with its platform-neutral view. `seq` orders them and lets a browser resume its
 * live stream where it left off.
 */
export const consoleMessages = pgTable(
  "console_messages",
  {
    id: text("id").primaryKey(),
    seq: bigint("seq", { mode: "number" }).generatedAlwaysAsIdentity().notNull(),
    /** `channel` (in the approval channel or a thread), `dm` (to one user), `ephemeral` (seen by one user). */
    kind: text("kind", { enum: ["channel", "dm", "ephemeral"] }).notNull(),
    channel: text("channel").notNull(),
    threadId: text("thread_id"),
    /** Who sees a `dm` or `ephemeral` message (the console user's id). */
    userId: text("user_id"),
    view: jsonb("view").$type<Record<string, unknown>>().notNull(),
    createdAt: at("created_at").notNull(),
    updatedAt: at("updated_at").notNull(),
  },
  (t) => [index("console_messages_seq_idx").on(t.seq), index("console_messages_user_idx").on(t.userId, t.seq)],
);
