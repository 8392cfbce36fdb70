import { Writable } from "node:stream";
import { CloudAdapter } from "botbuilder";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChatPort, EphemeralTarget, MessageRef } from "../src/bot/chat-port.js";
import { boltLogger } from "../src/bot/slack/slack-app.js";
import { SlackChatPort, createSlackWebClient } from "../src/bot/slack/slack-port.js";
import { ConversationStore } from "../src/broker/teams-conversations.js";
import { createTeamsAuthentication, type TeamsCloudOptions } from "../src/bot/teams/teams-app.js";
import { TeamsChatPort } from "../src/bot/teams/teams-port.js";
import { viewToPlainText, type MessageView } from "../src/bot/view-model.js";
import { ConsolePort } from "../src/bot/console/console-port.js";
import { ConsoleStore } from "../src/broker/console-messages.js";
import type { ConsoleMessage } from "../src/bot/console/console-port.js";
import type { Storage } from "../src/db/client.js";
import { createLogger } from "../src/infra/logger.js";
import { testPgliteStorage } from "./support/databases.js";
import { activityText, FakeBotConnector, FakeTokenCredentialsFactory, TEAMS_ISSUER } from "./support/fake-bot-connector.js";
import { FakeSlack, messageText } from "./support/fake-slack.js";

/**
 * One contract for every ChatPort (STYLE.md 5): each adapter runs against its local fake platform,
 * and the same assertions read back what a person would see there.
 */
interface Harness {
  port: ChatPort;
  /** A user the platform knows, and what it says about them. */
  user: { id: string; email: string; name: string };
  unknownUser: string;
  ephemeralTarget: EphemeralTarget;
  /** What a message shows now, or undefined when there is no such message. */
  textOf(ref: MessageRef): string | undefined;
  threadOf(root: MessageRef): string[];
  dmTexts(user: string): string[];
  ephemeralTexts(): string[];
  close(): Promise<void>;
}

const logger = createLogger("warn", new Writable({ write: (_chunk, _encoding, done) => done() }));

async function slackHarness(): Promise<Harness> {
  const user = { id: "U0DEV", email: "dev@example.com", name: "Dev" };
  const fake = new FakeSlack([{ id: user.id, email: user.email, realName: user.name }], "xoxb-contract");
  await fake.start();
  const client = createSlackWebClient({ token: "xoxb-contract", apiUrl: fake.apiUrl, logger: boltLogger(logger) });
  const port = new SlackChatPort({ client, approvalChannel: "C0APPROVALS" });
  return {
    port,
    user,
    unknownUser: "U0NOBODY",
    ephemeralTarget: { channel: "C0GENERAL", user: user.id },
    textOf: (ref) => {
      const message = fake.messages.get(`${ref.channel}/${ref.messageId}`);
      return message ? messageText(message) : undefined;
    },
    threadOf: (root) => fake.thread(root.channel, root.messageId).map((m) => messageText(m)),
    dmTexts: (id) => fake.rootsIn(`D${id}`).map((m) => messageText(m)),
    ephemeralTexts: () => fake.ephemeralTexts(user.id),
    close: () => fake.stop(),
  };
}

async function teamsHarness(): Promise<Harness> {
  const user = { id: "29:dev", email: "dev@example.com", name: "Dev" };
  const appId = "contract-app-id";
  const fake = new FakeBotConnector([user], appId, "contract-password");
  await fake.start();
  const storage: Storage = await testPgliteStorage();
  const config = { appId, appPassword: "contract-password", serviceUrl: fake.serviceUrl, approvalConversation: "19:approvals@thread.tacv2" };
  const cloud: TeamsCloudOptions = {
    openIdMetadataUrl: fake.openIdMetadataUrl,
    tokenIssuer: TEAMS_ISSUER,
    credentialsFactory: new FakeTokenCredentialsFactory(`${fake.url}/oauth2/v2.0/token`, appId, "contract-password") as unknown as TeamsCloudOptions["credentialsFactory"],
  };
  const port = new TeamsChatPort({
    adapter: new CloudAdapter(createTeamsAuthentication(config, cloud)),
    appId,
    serviceUrl: fake.serviceUrl,
    approvalConversation: config.approvalConversation,
    conversations: new ConversationStore(storage.db),
  });
  const conversationOf = (ref: MessageRef) => (ref.threadId ? `${ref.channel};messageid=${ref.threadId}` : ref.channel);
  return {
    port,
    user,
    unknownUser: "29:nobody",
    // Teams has no ephemeral messages: the answer goes to the conversation the person wrote in.
    ephemeralTarget: { channel: "a:personal-29:dev", user: user.id },
    textOf: (ref) => {
      const activity = fake.activities.get(`${conversationOf(ref)}/${ref.messageId}`);
      return activity ? activityText(activity.activity) : undefined;
    },
    threadOf: (root) => fake.thread(root.channel, root.messageId).map((a) => activityText(a.activity)),
    dmTexts: (id) => fake.personal(`a:1on1-${id}`).map((a) => activityText(a.activity)),
    ephemeralTexts: () => fake.personal("a:personal-29:dev").map((a) => activityText(a.activity)),
    async close() {
      await fake.stop();
      await storage.close();
    },
  };
}

/** The console's messages are rows; the harness keeps what the store wrote (and read back) to read them synchronously. */
class ObservedConsoleStore extends ConsoleStore<MessageView> {
  readonly rows = new Map<string, ConsoleMessage>();
  override async insert(message: Parameters<ConsoleStore<MessageView>["insert"]>[0]): Promise<ConsoleMessage> {
    const row = await super.insert(message);
    this.rows.set(row.id, row);
    return row;
  }
  override async update(id: string, view: MessageView): Promise<ConsoleMessage | undefined> {
    const row = await super.update(id, view);
    if (row) this.rows.set(row.id, row);
    return row;
  }
}

async function consoleHarness(): Promise<Harness> {
  const user = { id: "dev", email: "dev@example.com", name: "Dev" };
  const storage: Storage = await testPgliteStorage();
  const store = new ObservedConsoleStore(storage.db, () => new Date());
  const announced: number[] = [];
  const port = new ConsolePort({ store, db: storage.db, channel: "access-requests", users: [user], publish: (change) => announced.push(change.seq) });
  const text = (row: ConsoleMessage) => `${row.view.text}\n${viewToPlainText(row.view)}`;
  const rows = () => [...store.rows.values()].sort((x, y) => x.seq - y.seq);
  return {
    port,
    user,
    unknownUser: "nobody",
    ephemeralTarget: { channel: "access-requests", user: user.id },
    textOf: (ref) => {
      const row = store.rows.get(ref.messageId);
      return row ? text(row) : undefined;
    },
    threadOf: (root) => rows().filter((r) => r.threadId === root.messageId).map(text),
    dmTexts: (id) => rows().filter((r) => r.kind === "dm" && r.userId === id).map(text),
    ephemeralTexts: () => rows().filter((r) => r.kind === "ephemeral" && r.userId === user.id).map(text),
    async close() {
      // Every write was announced to the browsers, in order.
      expect(announced.length).toBeGreaterThanOrEqual(store.rows.size);
      await storage.close();
    },
  };
}

const view = (text: string, extra: Partial<MessageView> = {}): MessageView => ({ text, ...extra });

describe.each([
  ["Slack", slackHarness],
  ["Teams", teamsHarness],
  ["console", consoleHarness],
] as const)("ChatPort contract: %s", (_name, start) => {
  let h: Harness;
  beforeAll(async () => {
    h = await start();
  }, 30_000);
  afterAll(async () => {
    await h?.close();
  });

  it("posts to the approval channel and updates the message in place", async () => {
    const ref = await h.port.post(h.port.approvalChannel, view("first <!channel> & *bold*", { title: "Access request: orders-db", fields: [{ label: "Reason", value: "INC-1 <b>x</b>" }] }));
    expect(ref.channel).toBe(h.port.approvalChannel);
    expect(h.textOf(ref)).toContain("Access request: orders-db");
    expect(h.textOf(ref)).toContain("INC-1 <b>x</b>");
    await h.port.update(ref, view("second", { title: "Access request: orders-db", status: { text: "✅ Approved by Lead", tone: "good" } }));
    expect(h.textOf(ref)).toContain("✅ Approved by Lead");
    expect(h.textOf(ref)).not.toContain("first");
  });

  it("replies in the thread, from the root or from a reply, and updates a reply", async () => {
    const root = await h.port.post(h.port.approvalChannel, view("root"));
    const first = await h.port.reply(root, view("reply one"));
    expect(first.threadId).toBe(root.messageId);
    const second = await h.port.reply(first, view("reply two"));
    expect(second.threadId).toBe(root.messageId);
    expect(h.threadOf(root).join("\n")).toMatch(/reply one[\s\S]*reply two/);
    await h.port.update(first, view("reply one, edited", { code: "postgres://u:p@h/db" }));
    expect(h.textOf(first)).toContain("reply one, edited");
    expect(h.textOf(first)).toContain("postgres://u:p@h/db");
    expect(h.textOf(root)).toContain("root");
  });

  it("sends a direct message to a user by their platform id", async () => {
    const ref = await h.port.dm(h.user.id, view("your connection line", { code: "psql postgres://x" }));
    expect(h.textOf(ref)).toContain("psql postgres://x");
    expect(h.dmTexts(h.user.id).join("\n")).toContain("your connection line");
    // A second DM reuses the conversation.
    await h.port.dm(h.user.id, view("again"));
    expect(h.dmTexts(h.user.id).join("\n")).toMatch(/your connection line[\s\S]*again/);
  });

  it("answers one person (ephemeral, or the platform's equivalent)", async () => {
    await h.port.ephemeral(h.ephemeralTarget, view("only for you"));
    expect(h.ephemeralTexts().join("\n")).toContain("only for you");
  });

  it("resolves a user to their id, email and name, and rejects an unknown one", async () => {
    expect(await h.port.resolveUser(h.user.id)).toEqual({ externalId: h.user.id, email: h.user.email, displayName: h.user.name });
    await expect(h.port.resolveUser(h.unknownUser)).rejects.toMatchObject({ code: "chat_rejected" });
  });

  it("rejects an update of a message that does not exist with ChatRejected", async () => {
    await expect(h.port.update({ channel: h.port.approvalChannel, messageId: "999" }, view("x"))).rejects.toMatchObject({ code: "chat_rejected" });
  });
});
