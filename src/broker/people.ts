import { and, asc, eq, inArray, notInArray, or } from "drizzle-orm";
import { parseApproverEntry } from "../config/approver-entry.js";
import type { Executor } from "../db/client.js";
import { chatIdentities, people, personGroups, slackUserGroups } from "../db/schema.js";
import { appendAudit, recordAudit } from "./audit.js";
import type { BrokerContext } from "./context.js";
import { NotARequester } from "./errors.js";
import { newId } from "./ids.js";
import { isApprover, mayRequest, type GroupMembership, type Identity, type TargetPolicy } from "./policy.js";
import type { ChatRefusal, IdentityRef, LinkedIdentity, Person } from "./types.js";

/** A Slack user group as fetched (usergroups.list) with its members' Slack user ids (usergroups.users.list). */
export interface SlackUserGroup {
  id: string;
  handle: string;
  name: string;
  members: string[];
}

/** Without `slack.userGroupsRefresh` (a broker without Slack): the schema's default, 5 minutes. */
const DEFAULT_SLACK_REFRESH_MS = 5 * 60_000;
/** A Slack member list counts only while it is this many refresh intervals old at most. */
const SLACK_STALE_AFTER_INTERVALS = 3;

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));

/** People and the identities (chat, console, OIDC) and groups that name them; who approves what. */
export class PeopleService {
  constructor(private readonly ctx: BrokerContext) {}

  /**
   * Finds or creates the person behind a chat identity. Identities with the same email are one
   * person, whichever platform they come from, so `ref.email` must be one the platform vouches for
   * (Slack's confirmed `users.info` email, a Teams member of the configured tenant, an OIDC token
   * with `email_verified: true`, the operator's `console.users`): an adapter that cannot say passes
   * none, and an unvouched identity stays a person of its own.
   */
  async identify(ref: IdentityRef): Promise<Person> {
    const email = ref.email?.trim().toLowerCase() || null;
    const displayName = ref.displayName?.trim() || email || ref.externalId;
    const now = this.ctx.clock.now();
    return this.ctx.db.transaction(async (tx) => {
      const [known] = await tx
        .select({ person: people })
        .from(chatIdentities)
        .innerJoin(people, eq(people.id, chatIdentities.personId))
        .where(and(eq(chatIdentities.platform, ref.platform), eq(chatIdentities.externalId, ref.externalId)));
      if (known) {
        await tx
          .update(chatIdentities)
          .set({ email, displayName, updatedAt: now })
          .where(and(eq(chatIdentities.platform, ref.platform), eq(chatIdentities.externalId, ref.externalId)));
        if (email && !known.person.email) {
          // Learn the email, unless it already belongs to someone else: identities are never
          // merged implicitly (a failed UPDATE would also abort the transaction).
          const [owner] = await tx.select({ id: people.id }).from(people).where(eq(people.email, email));
          if (owner) return known.person;
          const [updated] = await tx.update(people).set({ email }).where(eq(people.id, known.person.id)).returning();
          return updated ?? known.person;
        }
        return known.person;
      }
      let person: Person | undefined;
      if (email) [person] = await tx.select().from(people).where(eq(people.email, email));
      if (!person) {
        [person] = await tx
          .insert(people)
          .values({ id: newId("usr"), email, displayName, createdAt: now })
          .onConflictDoNothing()
          .returning();
        if (!person && email) [person] = await tx.select().from(people).where(eq(people.email, email));
      }
      if (!person) throw new Error("could not create or find the person");
      await tx
        .insert(chatIdentities)
        .values({ platform: ref.platform, externalId: ref.externalId, personId: person.id, email, displayName, updatedAt: now })
        .onConflictDoNothing();
      return person;
    });
  }

  /**
   * A chat activity or person refused before anyone was identified (an activity from another
   * tenant, a member whose email the platform does not vouch for): audited, nothing else is done.
   */
  async recordChatRefusal(refusal: ChatRefusal): Promise<void> {
    await recordAudit(this.ctx.db, this.ctx.clock.now(), { kind: "chat.refused", data: { ...refusal } });
  }

  async person(personId: string, tx: Executor = this.ctx.db): Promise<Person | undefined> {
    const [row] = await tx.select().from(people).where(eq(people.id, personId));
    return row;
  }

  /**
   * What policy matches people and groups against: the email, every chat id of the person, and
   * their groups: the `groups` claim of their latest OIDC sign-in, and the Slack user groups whose
   * member list holds one of their Slack ids. A Slack member list not refreshed for three refresh
   * intervals (Slack unreachable, the scope missing) counts for nobody: a removal at Slack must not
   * be outlived by a stale copy.
   */
  async identity(person: Person, tx: Executor = this.ctx.db): Promise<Identity> {
    const chatIds = await tx
      .select({ platform: chatIdentities.platform, externalId: chatIdentities.externalId })
      .from(chatIdentities)
      .where(eq(chatIdentities.personId, person.id));
    const groups: GroupMembership[] = [];
    const [oidc] = await tx
      .select({ groups: personGroups.groups })
      .from(personGroups)
      .where(and(eq(personGroups.personId, person.id), eq(personGroups.source, "oidc")));
    for (const name of oidc?.groups ?? []) groups.push({ source: "oidc", name });
    const slackIds = chatIds.filter((c) => c.platform === "slack").map((c) => c.externalId);
    if (slackIds.length > 0) {
      const freshSince = this.ctx.clock.now().getTime() - SLACK_STALE_AFTER_INTERVALS * (this.ctx.config.slack?.userGroupsRefresh ?? DEFAULT_SLACK_REFRESH_MS);
      for (const group of await tx.select().from(slackUserGroups)) {
        if (group.refreshedAt.getTime() < freshSince) continue;
        if (group.members.some((member) => slackIds.includes(member))) groups.push({ source: "slack", id: group.id, handle: group.handle });
      }
    }
    return { personId: person.id, email: person.email, chatIds, groups };
  }

  /**
   * The identity of whoever `ref` names, without creating anyone: the person already linked to
   * the identity (or to its vouched email), or a person of their own who is not stored yet (no chat
   * ids but this one, no Slack groups). `oidcGroups` stands in for the stored OIDC groups: the
   * sign-in being checked is the fresher word. For a check that must leave nothing behind when it
   * refuses (the console's `console.allow`).
   */
  async identityOf(ref: IdentityRef, oidcGroups?: readonly string[]): Promise<{ person: Person | undefined; identity: Identity }> {
    const email = ref.email?.trim().toLowerCase() || null;
    const [linked] = await this.ctx.db
      .select({ person: people })
      .from(chatIdentities)
      .innerJoin(people, eq(people.id, chatIdentities.personId))
      .where(and(eq(chatIdentities.platform, ref.platform), eq(chatIdentities.externalId, ref.externalId)));
    let person = linked?.person;
    if (!person && email) [person] = await this.ctx.db.select().from(people).where(eq(people.email, email));
    const known = person ? await this.identity(person) : { personId: "", email, chatIds: [], groups: [] };
    const identity: Identity = {
      ...known,
      email: known.email ?? email,
      chatIds: known.chatIds.some((c) => c.platform === ref.platform && c.externalId === ref.externalId)
        ? known.chatIds
        : [...known.chatIds, { platform: ref.platform, externalId: ref.externalId }],
      groups:
        oidcGroups === undefined
          ? known.groups
          : [...known.groups.filter((g) => g.source !== "oidc"), ...oidcGroups.map((name) => ({ source: "oidc" as const, name }))],
    };
    return { person, identity };
  }

  /**
   * Replaces the person's OIDC groups with those of the sign-in just verified (each sign-in is the
   * whole truth: a group missing from it is a group left). A change is audited (`person.groups_changed`).
   */
  async recordOidcGroups(person: Person, groups: readonly string[]): Promise<void> {
    const now = this.ctx.clock.now();
    const names = [...new Set(groups)].sort();
    await this.ctx.db.transaction(async (tx) => {
      const [previous] = await tx
        .select({ groups: personGroups.groups })
        .from(personGroups)
        .where(and(eq(personGroups.personId, person.id), eq(personGroups.source, "oidc")))
        .for("update");
      await tx
        .insert(personGroups)
        .values({ personId: person.id, source: "oidc", groups: names, refreshedAt: now })
        .onConflictDoUpdate({ target: [personGroups.personId, personGroups.source], set: { groups: names, refreshedAt: now } });
      const before = previous?.groups ?? [];
      if (sameSet(before, names)) return;
      await appendAudit(tx, now, {
        kind: "person.groups_changed",
        actorId: person.id,
        data: { source: "oidc", added: names.filter((g) => !before.includes(g)), removed: before.filter((g) => !names.includes(g)) },
      });
    });
  }

  /**
   * Replaces the cached Slack user groups with a fresh fetch (the background refresh): groups no
   * longer named or no longer at Slack go, and each change of members is audited
   * (`slack.user_group_changed`, with the Slack user ids added and removed).
   */
  async replaceSlackUserGroups(groups: readonly SlackUserGroup[]): Promise<void> {
    const now = this.ctx.clock.now();
    await this.ctx.db.transaction(async (tx) => {
      const previous = new Map((await tx.select().from(slackUserGroups).for("update")).map((g) => [g.id, g]));
      for (const group of groups) {
        const members = [...new Set(group.members)].sort();
        const row = { id: group.id, handle: group.handle, name: group.name, members, refreshedAt: now };
        await tx.insert(slackUserGroups).values(row).onConflictDoUpdate({ target: slackUserGroups.id, set: row });
        const before = previous.get(group.id)?.members ?? [];
        if (sameSet(before, members) && previous.has(group.id)) continue;
        await appendAudit(tx, now, {
          kind: "slack.user_group_changed",
          data: { id: group.id, handle: group.handle, added: members.filter((m) => !before.includes(m)), removed: before.filter((m) => !members.includes(m)) },
        });
      }
      const kept = groups.map((g) => g.id);
      const gone = [...previous.values()].filter((g) => !kept.includes(g.id));
      if (gone.length === 0) return;
      await tx.delete(slackUserGroups).where(kept.length > 0 ? notInArray(slackUserGroups.id, kept) : undefined);
      for (const group of gone) {
        await appendAudit(tx, now, { kind: "slack.user_group_changed", data: { id: group.id, handle: group.handle, added: [], removed: group.members, gone: true } });
      }
    });
  }

  /** Every identity linked to the person (chat platforms, the console, OIDC subjects), for `whoami`. */
  async identitiesOf(person: Person): Promise<LinkedIdentity[]> {
    return this.ctx.db
      .select()
      .from(chatIdentities)
      .where(eq(chatIdentities.personId, person.id))
      .orderBy(asc(chatIdentities.platform), asc(chatIdentities.externalId));
  }

  async isApprover(target: string, person: Person, tx: Executor = this.ctx.db): Promise<boolean> {
    return isApprover(this.ctx.policy(target), await this.identity(person, tx));
  }

  /**
   * Refuses someone the target's `requesters` do not name (people, or groups as last refreshed),
   * before anything else is checked or stored: the refusal is audited (`request.refused`, with what
   * was asked) and nothing else is kept. A target without `requesters` takes requests from everyone.
   */
  async checkRequester(requester: Person, target: string, asked: Record<string, unknown>): Promise<void> {
    const policy = this.ctx.policy(target);
    if (mayRequest(policy, await this.identity(requester))) return;
    await recordAudit(this.ctx.db, this.ctx.clock.now(), {
      kind: "request.refused",
      actorId: requester.id,
      target: policy.name,
      data: { why: "not_a_requester", ...asked },
    });
    throw new NotARequester(policy.name);
  }

  /** The targets this person may request (`targets`, `whocan`): every target without `requesters`, and those that name them. */
  async requestable(person: Person): Promise<TargetPolicy[]> {
    const identity = await this.identity(person);
    return this.ctx.policies().filter((policy) => mayRequest(policy, identity));
  }

  /** `whocan`: a dry run of policy for a target. */
  async whocan(target: string): Promise<{ policy: TargetPolicy; approvers: { entry: string; name: string | null }[] }> {
    const policy = this.ctx.policy(target);
    const entries = policy.approvers.map((entry) => ({ entry, parsed: parseApproverEntry(entry) }));
    const emails = entries.flatMap(({ parsed }) => (!("problem" in parsed) && parsed.kind === "email" ? [parsed.email] : []));
    const chatIds = entries.flatMap(({ parsed }) => (!("problem" in parsed) && parsed.kind === "chat" ? [{ platform: parsed.platform, id: parsed.id }] : []));
    const byEmail = new Map<string, string>();
    const byChatId = new Map<string, string>();
    const chatKey = (platform: string, id: string) => `${platform}\u0000${id}`;
    if (emails.length > 0) {
      for (const p of await this.ctx.db.select().from(people).where(inArray(people.email, emails))) byEmail.set(p.email!, p.displayName);
    }
    if (chatIds.length > 0) {
      const rows = await this.ctx.db
        .select({ platform: chatIdentities.platform, externalId: chatIdentities.externalId, name: people.displayName })
        .from(chatIdentities)
        .innerJoin(people, eq(people.id, chatIdentities.personId))
        .where(or(...chatIds.map((c) => and(eq(chatIdentities.platform, c.platform), eq(chatIdentities.externalId, c.id)))));
      for (const r of rows) byChatId.set(chatKey(r.platform, r.externalId), r.name);
    }
    return {
      policy,
      approvers: entries.map(({ entry, parsed }) => {
        if ("problem" in parsed) return { entry, name: null };
        if (parsed.kind === "email") return { entry, name: byEmail.get(parsed.email) ?? null };
        if (parsed.kind === "chat") return { entry, name: byChatId.get(chatKey(parsed.platform, parsed.id)) ?? null };
        if (parsed.kind === "oidc-group") return { entry, name: `members of the group ${parsed.name}` };
        return { entry, name: `members of the Slack user group ${parsed.kind === "slack-group" ? parsed.id : `@${parsed.handle}`}` };
      }),
    };
  }

  /** The user name a person's credentials carry at the proxies. */
  loginOf(person: Person): string {
    return person.email ?? person.id;
  }
}
