import type { Broker, DecideResult, Grant } from "../broker/index.js";
import type { Database } from "../db/client.js";
import type { Logger } from "../infra/logger.js";
import type { DeliverConnection } from "./actions.js";
import type { ChatPlatform } from "./chat-port.js";
import { chatUserIdOf } from "./request-state.js";
import { connectionView, type MessageView } from "./view-model.js";

const PLATFORM_NAMES: Record<ChatPlatform, { of: string; in: string }> = {
  slack: { of: "Slack", in: "Slack" },
  teams: { of: "Teams", in: "Teams" },
  console: { of: "console", in: "the console" },
};

export interface ConnectionDeliveryOptions {
  platform: ChatPlatform;
  broker: Broker;
  db: Database;
  logger: Logger;
  /** The requester's time zone on this platform, when it gives one (Slack's users.info `tz`). */
  timeZoneOf?: (user: string) => Promise<string | undefined>;
  /** Sends the DM with the line to the requester's user id on this platform (Slack and Teams: the sealed outbox). */
  send: (user: string, view: MessageView, grant: Grant) => Promise<void>;
}

/**
 * The requester's DM with the connection line: from the decision's result, never from an event
 * (events cross replicas through Redis, and the line is a secret). Answers a note for the approver
 * when the requester has no identity on this platform.
 */
export function connectionDelivery(options: ConnectionDeliveryOptions): DeliverConnection {
  const { platform, broker, db, logger } = options;
  return async (result: Pick<DecideResult, "request" | "grant" | "connection">) => {
    const { grant, connection } = result;
    if (!grant || !connection) return undefined;
    const user = await chatUserIdOf(db, grant.personId, platform);
    if (!user) {
      logger.warn({ grant: grant.id }, `the requester has no ${PLATFORM_NAMES[platform].of} identity; the connection line was not delivered`);
      return `Approved, but the requester is not known in ${PLATFORM_NAMES[platform].in}: grant ${grant.id} has no delivered connection line.`;
    }
    const timeZone = await options.timeZoneOf?.(user);
    const view = connectionView({ target: grant.target, grantId: grant.id, line: connection.line, expiresAt: grant.expiresAt }, broker.clock.now(), timeZone);
    await options.send(user, view, grant);
    return undefined;
  };
}
