/** The chat platforms whose user ids an approver list may name. */
export const APPROVER_PLATFORMS = ["slack", "teams"] as const;
export type ApproverPlatform = (typeof APPROVER_PLATFORMS)[number];

/**
 * One entry of a list that names people in policy (a target's `approvers` and `requesters`,
 * `console.allow.groups`), read: an email (matched case-insensitively against the person's
 * verified email), a user id on one chat platform (matched exactly, on that platform only), or a
 * group: `group:<name>` (the OIDC `groups` claim of the person's latest sign-in, matched exactly),
 * `slack-group:<id>` (a Slack user group by id, `S0DBA`) or `@<handle>` (a Slack user group by its
 * handle, case-insensitively). A plain id without a prefix is a Slack id, as it always was; a
 * Teams id needs `teams:`.
 */
export type ApproverEntry =
  | { kind: "email"; email: string }
  | { kind: "chat"; platform: ApproverPlatform; id: string }
  | { kind: "oidc-group"; name: string }
  | { kind: "slack-group"; id: string }
  | { kind: "slack-handle"; handle: string };

/** The entries that name a group rather than one person. */
export type GroupEntry = Extract<ApproverEntry, { kind: "oidc-group" | "slack-group" | "slack-handle" }>;

export const isGroupEntry = (entry: ApproverEntry): entry is GroupEntry =>
  entry.kind === "oidc-group" || entry.kind === "slack-group" || entry.kind === "slack-handle";

const isPlatform = (name: string): name is ApproverPlatform => (APPROVER_PLATFORMS as readonly string[]).includes(name);

/** Slack user group ids (https://docs.slack.dev/reference/objects/usergroup-object): `S` then upper-case letters and digits. */
const SLACK_GROUP_ID = /^S[A-Z0-9]{2,}$/;
/** A user group's handle as people type it after `@`: letters, digits, `.`, `_`, `-`. */
const SLACK_HANDLE = /^[a-z0-9][a-z0-9._-]{0,79}$/i;

/** Reads a group entry (`group:…`, `slack-group:…`, `@…`), undefined when the text is not one. */
function parseGroupEntry(entry: string, text: string): ApproverEntry | { problem: string } | undefined {
  if (text.startsWith("group:")) {
    // IdP group names may hold spaces ("DB Admins"): the rest of the entry is the name, as the claim carries it.
    const name = text.slice("group:".length).trim();
    if (name === "") return { problem: `"${entry}" names no group after "group:"` };
    return { kind: "oidc-group", name };
  }
  if (text.startsWith("slack-group:")) {
    const id = text.slice("slack-group:".length);
    if (!SLACK_GROUP_ID.test(id)) {
      return { problem: `"${entry}" is not a Slack user group id like slack-group:S0DBA (write a handle as @dba)` };
    }
    return { kind: "slack-group", id };
  }
  if (text.startsWith("@")) {
    const handle = text.slice(1);
    if (!SLACK_HANDLE.test(handle)) return { problem: `"${entry}" is not a Slack user group handle like @dba` };
    return { kind: "slack-handle", handle: handle.toLowerCase() };
  }
  return undefined;
}

/** Reads an entry, or says why it cannot be one (the configuration refuses it with that). */
export function parseApproverEntry(entry: string): ApproverEntry | { problem: string } {
  const text = entry.trim();
  if (text === "") return { problem: "must not be empty" };
  const group = parseGroupEntry(entry, text);
  if (group) return group;
  if (/\s/.test(text)) return { problem: `"${entry}" is neither an email nor a chat user id (it contains spaces)` };
  const colon = text.indexOf(":");
  if (colon !== -1) {
    const prefix = text.slice(0, colon);
    const id = text.slice(colon + 1);
    if (isPlatform(prefix)) {
      if (id === "") return { problem: `"${entry}" names no ${prefix} user id after "${prefix}:"` };
      if (id.includes("@")) return { problem: `"${entry}": an email needs no platform prefix (write "${id}")` };
      // Teams knows a user by the id its activities carry (`29:…`, chat_identities.external_id);
      // an Entra object id would silently match no one.
      if (prefix === "teams" && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
        return { problem: `"${entry}" is a Microsoft Entra object id: name the Teams user id instead ("teams:29:…", shown by /access whoami), or the email` };
      }
      return { kind: "chat", platform: prefix, id };
    }
    if (!text.includes("@")) {
      // Teams user ids look like `29:1AbC…` (or `8:orgid:…`): once a plain id matched them on any
      // platform; now a plain id is a Slack id, so a Teams id must say where it comes from.
      const teamsLike = /^\d+:/.test(text);
      return {
        problem: teamsLike
          ? `"${entry}" looks like a Teams user id: write it as "teams:${text}" (a plain id is a Slack user id)`
          : `"${entry}" names an unknown platform "${prefix}" (write an email, slack:<user id>, teams:<user id>, group:<OIDC group>, slack-group:<id> or @<Slack handle>)`,
      };
    }
  }
  if (text.includes("@")) return { kind: "email", email: text.toLowerCase() };
  return { kind: "chat", platform: "slack", id: text };
}

/** Reads an entry of `console.allow.groups`: a group only (people are listed by `emails` and `domains`). */
export function parseGroupOnlyEntry(entry: string): GroupEntry | { problem: string } {
  const parsed = parseApproverEntry(entry);
  if ("problem" in parsed) return parsed;
  if (!isGroupEntry(parsed)) return { problem: `"${entry}" is not a group (write group:<OIDC group>, slack-group:<id> or @<Slack handle>; list people under emails)` };
  return parsed;
}

/** The Slack user groups a list of entries names, by id and by handle: what the background refresh fetches. */
export function slackGroupsNamed(entries: Iterable<string>): { ids: Set<string>; handles: Set<string> } {
  const ids = new Set<string>();
  const handles = new Set<string>();
  for (const text of entries) {
    const parsed = parseApproverEntry(text);
    if ("problem" in parsed) continue;
    if (parsed.kind === "slack-group") ids.add(parsed.id);
    if (parsed.kind === "slack-handle") handles.add(parsed.handle);
  }
  return { ids, handles };
}
