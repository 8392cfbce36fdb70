import { spawn } from "node:child_process";
import type { FakeMessage, FakeSlack } from "./fake-slack.js";
import { slackRequests } from "./slack-requests.js";

/** Slack as it calls the gateway (signed slash commands and button clicks), on a gateway whose port is known late. */
export class SlackDriver {
  readonly #requests: ReturnType<typeof slackRequests>;

  constructor(fake: FakeSlack, signingSecret: string, port: () => number) {
    this.#requests = slackRequests({ fake: () => fake, endpoint: () => `http://127.0.0.1:${port()}/slack/events`, signingSecret });
  }

  slash(user: string, text: string): Promise<void> {
    return this.#requests.slash(user, text);
  }

  click(user: string, actionId: string, value: string, message: FakeMessage): Promise<void> {
    return this.#requests.click(user, actionId, value, message);
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
