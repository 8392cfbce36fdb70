import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import type { FakeMessage, FakeSlack } from "./fake-slack.js";

/**
 * Slack as it calls the gateway: signed slash commands and block actions (the Events API request
 * format, https://docs.slack.dev/authentication/verifying-requests-from-slack), posted to the
 * gateway's HTTP listener.
 */
export class SlackDriver {
  #triggers = 0;

  constructor(
    private readonly fake: FakeSlack,
    private readonly signingSecret: string,
    private readonly port: () => number,
  ) {}

  async post(body: string): Promise<number> {
    const timestamp = Math.floor(Date.now() / 1000);
    const response = await fetch(`http://127.0.0.1:${this.port()}/slack/events`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": String(timestamp),
        "x-slack-signature": `v0=${createHmac("sha256", this.signingSecret).update(`v0:${timestamp}:${body}`).digest("hex")}`,
      },
      body,
    });
    await response.text();
    return response.status;
  }

  async slash(user: string, text: string): Promise<void> {
    const status = await this.post(
      new URLSearchParams({
        team_id: "T0TEAM",
        channel_id: "C0GENERAL",
        user_id: user,
        user_name: user.toLowerCase(),
        command: "/access",
        text,
        api_app_id: "A0APP",
        response_url: this.fake.responseUrl(user),
        trigger_id: `trigger-${++this.#triggers}`,
      }).toString(),
    );
    if (status !== 200) throw new Error(`slash command answered ${status}`);
  }

  async click(user: string, actionId: string, value: string, message: FakeMessage): Promise<void> {
    const payload = {
      type: "block_actions",
      user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: "T0TEAM" },
      api_app_id: "A0APP",
      container: { type: "message", message_ts: message.ts, channel_id: message.channel, is_ephemeral: false },
      trigger_id: `trigger-${++this.#triggers}`,
      team: { id: "T0TEAM", domain: "acme" },
      channel: { id: message.channel, name: "approvals" },
      message: { type: "message", ts: message.ts, text: message.text, blocks: message.blocks },
      response_url: this.fake.responseUrl(user),
      actions: [{ type: "button", action_id: actionId, block_id: "jitgate_actions", value, text: { type: "plain_text", text: actionId }, action_ts: `${Date.now() / 1000}` }],
    };
    const status = await this.post(`payload=${encodeURIComponent(JSON.stringify(payload))}`);
    if (status !== 200) throw new Error(`block action answered ${status}`);
  }
}

/** Runs psql with `uri` on `script` (one session), and resolves with its exit code and output. */
export function psql(uri: string, script: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("psql", [uri, "-X", "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"], { stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
    child.stdin.end(script);
  });
}
