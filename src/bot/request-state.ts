import type { AccessRequest, Broker } from "../broker/index.js";
import { chatUserIdOf as chatUserIdIn, MessageRefs as StoredMessageRefs, type MessageRole } from "../broker/thread-state.js";
import type { Database } from "../db/client.js";
import type { ChatPlatform } from "./chat-port.js";
import type { GrantState, HeldState, RequestState } from "./view-model.js";

// What a thread shows is read by the broker (broker/thread-state.ts); these keep the chat side's
// names and types. The `db` arguments are kept for the adapters' call sites and not needed.

/** A held statement as its thread message shows it, read when the message is (re)drawn. */
export async function loadHeldState(broker: Broker, _db: Database, heldId: string): Promise<{ held: HeldState; requestId: string }> {
  return broker.threads.held(heldId);
}

/** Reads what a request's messages show from the database, so any replica renders the same thing. */
export async function loadGrantState(broker: Broker, _db: Database, grantId: string): Promise<GrantState> {
  return broker.threads.grant(grantId);
}

export async function loadRequestState(broker: Broker, _db: Database, requestId: string): Promise<RequestState> {
  return broker.threads.request(requestId);
}

/**
 * The access request whose thread holds everything about `request`: itself, or for an extension
 * request the request of the grant it extends.
 */
export async function threadRequestOf(
  broker: Broker,
  request: Pick<AccessRequest, "id" | "kind" | "grantId" | "origin">,
): Promise<{ id: string; origin: string }> {
  if (request.kind !== "extension" || !request.grantId) return { id: request.id, origin: request.origin };
  const grant = await broker.getGrant(request.grantId);
  const parent = await broker.getRequest(grant.requestId);
  return { id: parent.id, origin: parent.origin };
}

/** A person's user id on a chat platform (the most recently seen, if several). */
export async function chatUserIdOf(db: Database, personId: string, platform: ChatPlatform): Promise<string | undefined> {
  return chatUserIdIn(db, personId, platform);
}

export type { MessageRole };

/** Where a request's messages are on one chat platform (stored by the broker's `MessageRefs`). */
export class MessageRefs extends StoredMessageRefs {
  constructor(
    db: Database,
    override readonly platform: ChatPlatform,
  ) {
    super(db, platform);
  }
}
