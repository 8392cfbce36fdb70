import { webApi } from "@slack/bolt";
import type { SlackUserGroup } from "../../broker/index.js";

type WebClient = InstanceType<typeof webApi.WebClient>;

/** The Slack user groups policy names: by id (`slack-group:S0DBA`) and by handle (`@dba`, lower-case). */
export interface NamedSlackGroups {
  ids: ReadonlySet<string>;
  handles: ReadonlySet<string>;
}

export interface FetchedSlackGroups {
  groups: SlackUserGroup[];
  /** Entries that name no enabled user group of the workspace (`slack-group:S0GONE`, `@typo`): they admit nobody. */
  missing: string[];
}

/**
 * Fetches the user groups that policy names, with their members: `usergroups.list` for every
 * enabled group of the workspace (ids, handles; https://docs.slack.dev/reference/methods/usergroups.list),
 * then `usergroups.users.list` for each named one (its members' user ids;
 * https://docs.slack.dev/reference/methods/usergroups.users.list). Both need the bot scope
 * `usergroups:read`. Any failure fails the whole fetch: a partial answer must not be mistaken for
 * "this group has no members any more", nor for "these people are still in".
 */
export async function fetchNamedSlackGroups(client: WebClient, named: NamedSlackGroups): Promise<FetchedSlackGroups> {
  // Disabled groups are left out (include_disabled defaults to false): a disabled group admits nobody.
  const listed = await client.usergroups.list({ include_disabled: false });
  const all = (listed.usergroups ?? []).filter((g) => typeof g.id === "string" && typeof g.handle === "string" && !g.date_delete);
  const wanted = all.filter((g) => named.ids.has(g.id!) || named.handles.has(g.handle!.toLowerCase()));
  const groups: SlackUserGroup[] = [];
  for (const group of wanted) {
    const members = await client.usergroups.users.list({ usergroup: group.id!, include_disabled: false });
    groups.push({ id: group.id!, handle: group.handle!.toLowerCase(), name: group.name ?? group.handle!, members: (members.users ?? []).filter((u) => typeof u === "string") });
  }
  const missing = [
    ...[...named.ids].filter((id) => !groups.some((g) => g.id === id)).map((id) => `slack-group:${id}`),
    ...[...named.handles].filter((handle) => !groups.some((g) => g.handle === handle)).map((handle) => `@${handle}`),
  ];
  return { groups, missing };
}
