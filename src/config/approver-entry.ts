/** The chat platforms whose user ids an approver list may name. */
export const APPROVER_PLATFORMS = ["slack", "teams"] as const;
export type ApproverPlatform = (typeof APPROVER_PLATFORMS)[number];

/**
 * One entry of a target's `approvers`, read: an email (matched case-insensitively against the
 * person's verified email), or a user id on one chat platform (matched exactly, on that platform
 * only). A plain id without a prefix is a Slack id, as it always was; a Teams id needs `teams:`.
 */
export type ApproverEntry = { kind: "email"; email: string } | { kind: "chat"; platform: ApproverPlatform; id: string };

const isPlatform = (name: string): name is ApproverPlatform => (APPROVER_PLATFORMS as readonly string[]).includes(name);

/** Reads an approver entry, or says why it cannot be one (the configuration refuses it with that). */
export function parseApproverEntry(entry: string): ApproverEntry | { problem: string } {
  const text = entry.trim();
  if (text === "") return { problem: "must not be empty" };
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
          : `"${entry}" names an unknown platform "${prefix}" (write an email, slack:<user id> or teams:<user id>)`,
      };
    }
  }
  if (text.includes("@")) return { kind: "email", email: text.toLowerCase() };
  return { kind: "chat", platform: "slack", id: text };
}
