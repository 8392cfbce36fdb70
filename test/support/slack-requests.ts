import { createHmac } from "node:crypto";
import { expect } from "vitest";
import type { FakeMessage, FakeSlack } from "./fake-slack.js";

export interface SlackRequestsOptions {
  /** The fake workspace (read when a request is made: tests start it in beforeAll). */
  fake: () => FakeSlack;
  /** The gateway's `POST /slack/events`. */
  endpoint: () => string;
  signingSecret: string;
}

/** Slack's request signature: v0 HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret. */
export function slackSignature(body: string, timestamp: number, secret: string): string {
  return `v0=${createHmac("sha256", secret).update(`v0:${timestamp}:${body}`).digest("hex")}`;
}

/** Slash commands and button clicks as Slack sends them to the gateway, signed, each answered 200. */
export function slackRequests(options: SlackRequestsOptions) {
  let counter = 0;

  async function post(body: string): Promise<void> {
    const timestamp = Math.floor(Date.now() / 1000);
    const response = await fetch(options.endpoint(), {
      method: "POST",
      headers: {
        // Exactly what Slack sends for slash commands and interactivity.
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": String(timestamp),
        "x-slack-signature": slackSignature(body, timestamp, options.signingSecret),
      },
      body,
    });
    expect(response.status).toBe(200);
    await response.text();
  }

  /**
   * `/access <text>` typed by `user`. `respondTo`: the fake's response_url label its answers go to
   * (default: the user), so a test can tell the answers of one command from another's.
   */
  function slash(user: string, text: string, respondTo = user): Promise<void> {
    return post(
      new URLSearchParams({
        token: "verification-token-unused",
        team_id: "T0TEAM",
        team_domain: "acme",
        channel_id: "C0GENERAL",
        channel_name: "general",
        user_id: user,
        user_name: user.toLowerCase(),
        command: "/access",
        text,
        api_app_id: "A0APP",
        is_enterprise_install: "false",
        response_url: options.fake().responseUrl(respondTo),
        trigger_id: `trigger-${user}-${++counter}`,
      }).toString(),
    );
  }

  /** A click by `user` on the button `actionId` (carrying `value`) of `message`; `respondTo` as for slash. */
  function click(user: string, actionId: string, value: string, message: FakeMessage, respondTo = user): Promise<void> {
    const payload = {
      type: "block_actions",
      user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: "T0TEAM" },
      api_app_id: "A0APP",
      token: "verification-token-unused",
      container: { type: "message", message_ts: message.ts, channel_id: message.channel, is_ephemeral: false },
      trigger_id: `trigger-${user}-${++counter}`,
      team: { id: "T0TEAM", domain: "acme" },
      channel: { id: message.channel, name: "approvals" },
      message: { type: "message", ts: message.ts, text: message.text, blocks: message.blocks },
      response_url: options.fake().responseUrl(respondTo),
      actions: [{ type: "button", action_id: actionId, block_id: "jitgate_actions", value, text: { type: "plain_text", text: actionId }, action_ts: `${Date.now() / 1000}` }],
    };
    return post(`payload=${encodeURIComponent(JSON.stringify(payload))}`);
  }

  return { post, slash, click };
}
