import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import type { FakeActivity, FakeBotConnector } from "./fake-bot-connector.js";

export interface TeamsActivitiesOptions {
  /** The fake connector (read when an activity is made: tests start it in beforeAll). */
  fake: () => FakeBotConnector;
  /** The gateway's `/api/messages`. */
  endpoint: () => string;
  members: readonly { id: string; name: string }[];
  appId: string;
  tenant: string;
  team: string;
  /** The approval channel, where cards are clicked. */
  channel: string;
}

/** Activities as Teams sends them to the bot, signed with the fake channel's token, and their answers. */
export function teamsActivities(options: TeamsActivitiesOptions) {
  const member = (id: string) => options.members.find((m) => m.id === id)!;
  let counter = 0;

  function baseActivity(user: string, conversation: Record<string, unknown>, channelData: Record<string, unknown> = {}) {
    return {
      id: `1700${++counter}${randomBytes(2).toString("hex")}`,
      timestamp: new Date().toISOString(),
      localTimestamp: new Date().toISOString(),
      serviceUrl: options.fake().serviceUrl,
      channelId: "msteams",
      from: { id: user, name: member(user).name, aadObjectId: `aad-${user}` },
      conversation: { tenantId: options.tenant, ...conversation },
      recipient: { id: `28:${options.appId}`, name: "jitgate" },
      locale: "en-US",
      channelData: { tenant: { id: options.tenant }, ...channelData },
    };
  }

  /** A message in the user's personal chat with the bot. */
  function personalMessage(user: string, text: string) {
    return { ...baseActivity(user, { conversationType: "personal", id: `a:personal-${user}` }), type: "message", text, textFormat: "plain" };
  }

  /** A new post in a channel that @mentions the bot. */
  function channelMention(user: string, text: string) {
    const general = "19:general@thread.tacv2";
    const activity = baseActivity(user, { conversationType: "channel", isGroup: true }, { teamsChannelId: general, teamsTeamId: options.team, channel: { id: general }, team: { id: options.team } });
    return {
      ...activity,
      conversation: { ...activity.conversation, id: `${general};messageid=${activity.id}` },
      type: "message",
      text: `<at>jitgate</at> ${text}`,
      textFormat: "plain",
      entities: [{ type: "mention", text: "<at>jitgate</at>", mentioned: { id: `28:${options.appId}`, name: "jitgate" } }],
    };
  }

  /** A click on an Action.Execute button of a card in the approval channel (Universal Actions). */
  function cardAction(user: string, card: FakeActivity, verb: string, data: Record<string, unknown>) {
    const conversation = card.conversation.includes(";messageid=") ? card.conversation : `${card.conversation};messageid=${card.id}`;
    const activity = baseActivity(user, { conversationType: "channel", isGroup: true, id: conversation }, { channel: { id: options.channel }, team: { id: options.team } });
    return { ...activity, type: "invoke", name: "adaptiveCard/action", replyToId: card.id, value: { action: { type: "Action.Execute", id: verb, verb, data }, trigger: "manual" } };
  }

  /** Posts an activity as the channel does; `token: null` sends none. */
  async function post(activity: Record<string, unknown>, token: string | null = options.fake().channelToken()): Promise<Response> {
    return fetch(options.endpoint(), {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(activity),
    });
  }

  async function send(activity: Record<string, unknown>): Promise<void> {
    const response = await post(activity);
    expect(response.status).toBe(200);
    await response.text();
  }

  /** Clicks and returns the card Teams shows the clicker (the invoke response). */
  async function click(user: string, card: FakeActivity, verb: string, data: Record<string, unknown>): Promise<Record<string, unknown>> {
    const response = await post(cardAction(user, card, verb, data));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { statusCode: number; type: string; value: Record<string, unknown> };
    expect(body.statusCode).toBe(200);
    expect(body.type).toBe("application/vnd.microsoft.card.adaptive");
    return body.value;
  }

  return { baseActivity, personalMessage, channelMention, cardAction, post, send, click };
}
