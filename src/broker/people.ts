import { and, asc, eq, inArray, or } from "drizzle-orm";
import { parseApproverEntry } from "../config/approver-entry.js";
import type { Executor } from "../db/client.js";
import { chatIdentities, people } from "../db/schema.js";
import { recordAudit } from "./audit.js";
import type { BrokerContext } from "./context.js";
import { newId } from "./ids.js";
import { isApprover, type Identity, type TargetPolicy } from "./policy.js";
import type { ChatRefusal, IdentityRef, LinkedIdentity, Person } from "./types.js";

/** People and the identities (chat, console, OIDC) that name them; who approves what. */
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

  /** What policy matches approvers against: the email and every chat id of the person. */
  async identity(person: Person, tx: Executor = this.ctx.db): Promise<Identity> {
    const chatIds = await tx
      .select({ platform: chatIdentities.platform, externalId: chatIdentities.externalId })
      .from(chatIdentities)
      .where(eq(chatIdentities.personId, person.id));
    return { personId: person.id, email: person.email, chatIds };
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

  /** `whocan`: a dry run of policy for a target. */
  async whocan(target: string): Promise<{ policy: TargetPolicy; approvers: { entry: string; name: string | null }[] }> {
    const policy = this.ctx.policy(target);
    const entries = policy.approvers.map((entry) => ({ entry, parsed: parseApproverEntry(entry) }));
    const emails = entries.flatMap(({ parsed }) => (!("problem" in parsed) && parsed.kind === "email" ? [parsed.email] : []));
    const chatIds = entries.flatMap(({ parsed }) => (!("problem" in parsed) && parsed.kind === "chat" ? [parsed] : []));
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
        return { entry, name: (parsed.kind === "email" ? byEmail.get(parsed.email) : byChatId.get(chatKey(parsed.platform, parsed.id))) ?? null };
      }),
    };
  }

  /** The user name a person's credentials carry at the proxies. */
  loginOf(person: Person): string {
    return person.email ?? person.id;
  }
}
