import { formatDuration } from "../config/duration.js";
import { BrokerError, INBOX_LIMIT, parseStartTime, RequestNotPending, SshKeys, type Broker, type Person } from "../broker/index.js";
import type { DeliverConnection } from "./actions.js";
import type { ChatPlatform } from "./chat-port.js";
import { formatTime, inboxView, knownTimeZone, noticeView, type MessageView } from "./view-model.js";

/**
 * The command words of DESIGN.md's table, platform-neutral: Slack's `/access …` and the words sent
 * to the Teams bot are parsed and run here, and answered with a view.
 */
export type ParsedCommand =
  | {
      word: "request";
      target?: string | undefined;
      duration?: string | undefined;
      reason: string;
      /** `from 22:00` / `from 2026-12-03T22:00`: a scheduled grant. */
      from?: string | undefined;
      /** `--once`: the grant ends when its first session closes. */
      once?: boolean;
      /** `--break-glass`: the grant at once, reviewed afterwards. */
      breakGlass?: boolean;
    }
  | { word: "list" }
  | { word: "extend"; grantId?: string | undefined; duration?: string | undefined; reason: string }
  | { word: "revoke"; grantId?: string | undefined; reason: string }
  | { word: "targets" }
  | { word: "whocan"; target?: string | undefined }
  | { word: "key"; action?: string | undefined; argument: string }
  | { word: "whoami" }
  | { word: "pending" }
  | { word: "help" }
  | { word: "unknown"; text: string };

export function parseCommand(text: string): ParsedCommand {
  const words = text.trim().split(/\s+/).filter((w) => w !== "");
  const [first, a, b, ...rest] = words;
  switch (first?.toLowerCase()) {
    case undefined:
    case "help":
      return { word: "help" };
    case "request":
      return parseRequest(a, b, rest);
    case "list":
      return { word: "list" };
    case "extend":
      return { word: "extend", grantId: a, duration: b, reason: rest.join(" ") };
    case "revoke":
      return { word: "revoke", grantId: a, reason: [b, ...rest].filter((w) => w !== undefined).join(" ") };
    case "targets":
      return { word: "targets" };
    case "whocan":
      return { word: "whocan", target: a };
    case "key":
      return { word: "key", action: a?.toLowerCase(), argument: [b, ...rest].filter((w) => w !== undefined).join(" ") };
    case "whoami":
      return { word: "whoami" };
    case "pending":
      return { word: "pending" };
    default:
      return { word: "unknown", text: first ?? "" };
  }
}

/**
 * `request <target> <duration> [from <time>] [--once] [--break-glass] <reason…>`: `from` comes right
 * after the duration and is followed by a time (it starts with a digit, or is a day word such as
 * "tomorrow", which is refused with the forms that work); otherwise it is the reason's first word
 * ("from teams, INC-1 …"). The flags may stand anywhere in the reason.
 */
function parseRequest(target: string | undefined, duration: string | undefined, rest: string[]): ParsedCommand {
  let words = rest;
  let from: string | undefined;
  if (words[0]?.toLowerCase() === "from" && (words[1] === undefined || /^(\d|today$|tonight$|tomorrow$|now$)/i.test(words[1]))) {
    from = words[1] ?? "";
    words = words.slice(2);
  }
  const once = words.some((w) => w.toLowerCase() === "--once");
  const breakGlass = words.some((w) => w.toLowerCase() === "--break-glass");
  const reason = words.filter((w) => !["--once", "--break-glass"].includes(w.toLowerCase())).join(" ");
  return { word: "request", target, duration, reason, ...(from !== undefined ? { from } : {}), ...(once ? { once } : {}), ...(breakGlass ? { breakGlass } : {}) };
}

export function helpView(command: string): MessageView {
  return noticeView(`Usage of ${command}:`, [
    `${command} request <target> <duration> <reason…>   ask for access (30m, 2h, 1d; up to the target's maximum)`,
    `${command} request <target> <duration> from <22:00 | 2026-12-03T22:00> <reason…>   access that starts later (your time zone)`,
    `${command} request <target> <duration> --once <reason…>   access that ends when your first session closes`,
    `${command} request <target> <duration> --break-glass <reason…>   emergency access at once, without approval (if the target allows you); reviewed afterwards`,
    `${command} list   my pending requests and live grants`,
    `${command} extend <grant-id> <duration>   ask for more time`,
    `${command} revoke <grant-id>   end a grant now`,
    `${command} targets   what I may request`,
    `${command} whocan <target>   who would approve, and with what quorum`,
    `${command} pending   what waits for my decision (requests, extensions, held statements, break-glass reviews), oldest first, with their buttons`,
    `${command} key add <public key>   register an SSH public key to log in to SSH targets with (instead of the password)`,
    `${command} key list   my registered SSH keys`,
    `${command} key remove <key-id or fingerprint>   unregister an SSH key`,
    `${command} whoami   who jitgate knows you as: your email and the linked identities (Slack, Teams, console, OIDC)`,
    `${command} help   this text`,
  ]);
}

/**
 * A short answer for an error, for the person who caused it: a broker error's own message (written
 * to be shown), never a stack trace. `unexpected` says the adapter should log it.
 */
export function errorView(error: unknown): { view: MessageView; unexpected: boolean } {
  if (error instanceof RequestNotPending) {
    const by = error.decidedBy.length > 0 ? ` by ${error.decidedBy.join(", ")}` : "";
    return { view: noticeView(`This request is already ${error.state}${by}.`), unexpected: false };
  }
  if (error instanceof BrokerError) return { view: noticeView(capitalize(error.message)), unexpected: false };
  return { view: noticeView("Something went wrong on our side; it has been logged. Please try again."), unexpected: true };
}

const capitalize = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);

export interface CommandContext {
  broker: Broker;
  person: Person;
  /** How the command is spelled on this platform (`/access`), for usage lines. */
  command: string;
  origin: ChatPlatform;
  /** The person's time zone, where their platform says: the times in the answers use it. */
  timeZone?: string | undefined;
  /** Sends the requester the connection line of a grant issued by the command itself (break-glass). */
  deliverConnection?: DeliverConnection | undefined;
}

export interface CommandOutcome {
  view: MessageView;
  /** Set when the command failed in a way nobody expected (to be logged; the view says so). */
  failure?: unknown;
}

/** Parses and runs one command; always answers (errors become short replies). */
export async function runCommand(context: CommandContext, text: string): Promise<CommandOutcome> {
  try {
    return { view: await execute(context, parseCommand(text)) };
  } catch (error) {
    const { view, unexpected } = errorView(error);
    return unexpected ? { view, failure: error } : { view };
  }
}

async function execute(context: CommandContext, parsed: ParsedCommand): Promise<MessageView> {
  const { broker, person, command } = context;
  const now = broker.clock.now();
  switch (parsed.word) {
    case "help":
      return helpView(command);
    case "unknown":
      return { ...helpView(command), text: `Unknown command "${parsed.text}". Usage of ${command}:` };
    case "request": {
      const shape = "request <target> <duration> [from <time>] [--once] [--break-glass] <reason…>";
      if (!parsed.target) return usage(command, shape);
      await broker.knownTarget(person, parsed.target); // an unknown target is answered with the targets this person may request
      if (!parsed.duration) return usage(command, shape);
      // The requester's zone (Slack's users.info tz), else the configured default.
      // A zone the runtime does not know (a platform may send anything) falls back to the default too.
      const zone = context.timeZone && knownTimeZone(context.timeZone) === context.timeZone ? context.timeZone : broker.context.config.defaults.timezone;
      if (parsed.breakGlass) {
        if (parsed.from !== undefined) return noticeView("Break-glass is access now: it cannot start later. Drop from …, or ask without --break-glass.");
        const used = await broker.breakGlass(person, { target: parsed.target, duration: parsed.duration, reason: parsed.reason, origin: context.origin, once: parsed.once });
        const note = await context.deliverConnection?.({ request: used.request, grant: used.grant, connection: used.connection });
        return noticeView(
          `🚨 Break-glass: grant ${used.grant.id} on ${used.grant.target} issued until ${formatTime(used.grant.expiresAt, now, zone)}${used.grant.once ? ", ending with your first session" : ""}. The approvers have been alerted and will review this use (${used.review.id}).${note ? ` ${note}` : " Your connection line is in a direct message."}`,
        );
      }
      if (parsed.from !== undefined && parsed.from === "") return usage(command, shape);
      const startsAt = parsed.from === undefined ? undefined : parseStartTime(parsed.from, zone, now);
      const request = await broker.request(person, {
        target: parsed.target,
        duration: parsed.duration,
        reason: parsed.reason,
        origin: context.origin,
        startsAt,
        once: parsed.once,
      });
      if (request.autoApproved) {
        const { rule, grant } = request.autoApproved;
        const note = await context.deliverConnection?.({ request, grant, connection: request.autoApproved.connection });
        return noticeView(
          `Request ${request.id} approved by rule ${rule}: grant ${grant.id} on ${grant.target} until ${formatTime(grant.expiresAt, now, zone)}${grant.once ? ", ending with your first session" : ""}.${note ? ` ${note}` : " Your connection line is in a direct message."}`,
          request.autoApproved.facts,
        );
      }
      const needs = request.approvalsRequired === 1 ? "1 approval" : `${request.approvalsRequired} approvals`;
      const when = request.startsAt ? ` from ${formatTime(request.startsAt, now, zone)}` : "";
      const once = request.once ? ", ending with your first session" : "";
      return noticeView(
        `Request ${request.id} sent: ${request.target} for ${formatDuration(request.durationMs)}${when}${once} (needs ${needs}). You will get a direct message when ${request.startsAt ? "the grant starts" : "it is approved"}.`,
      );
    }
    case "list": {
      const { requests, grants, scheduled } = await broker.list(person);
      if (requests.length === 0 && grants.length === 0 && scheduled.length === 0) return noticeView("You have no pending requests and no live grants.");
      return noticeView("Your pending requests and live grants:", [
        ...grants.map((g) => `live: ${g.target}, grant ${g.id}, expires ${formatTime(g.expiresAt, now, context.timeZone)}${g.once ? ", ends with its first session" : ""}`),
        ...scheduled.map(
          (r) => `scheduled: ${r.target} from ${formatTime(r.startsAt!, now, context.timeZone)} for ${formatDuration(r.durationMs)}, approved, request ${r.id}`,
        ),
        ...requests.map(
          (r) =>
            `pending: ${r.kind === "extension" ? `extension of ${r.grantId}` : r.target} for ${formatDuration(r.durationMs)}${r.startsAt ? ` from ${formatTime(r.startsAt, now, context.timeZone)}` : ""}${r.breakGlass ? " (break-glass, waiting for your sign-in)" : ""}, request ${r.id}`,
        ),
      ]);
    }
    case "extend": {
      if (!parsed.grantId || !parsed.duration) return usage(command, "extend <grant-id> <duration>");
      const result = await broker.extend(person, {
        grantId: parsed.grantId,
        duration: parsed.duration,
        ...(parsed.reason ? { reason: parsed.reason } : {}),
      });
      if (result.kind === "extended") {
        return noticeView(`Grant ${result.grant.id} extended: access to ${result.grant.target} now expires ${formatTime(result.grant.expiresAt, now, context.timeZone)}.`);
      }
      return noticeView(`Extension request ${result.request.id} sent for approval (${formatDuration(result.request.durationMs)} more).`);
    }
    case "revoke": {
      if (!parsed.grantId) return usage(command, "revoke <grant-id>");
      const grant = await broker.revoke(person, { grantId: parsed.grantId, reason: parsed.reason || undefined });
      return noticeView(`Grant ${grant.id} (${grant.target}) revoked.`);
    }
    case "targets": {
      // Only what the person may request: a target whose requesters do not name them is not shown.
      const targets = await broker.requestableBy(person);
      if (targets.length === 0) return noticeView(broker.targets().length === 0 ? "No targets are configured." : "There is no target you may request.");
      return noticeView("Targets you may request:", targets.map((t) => {
        const rules = [`${t.kind}`, `up to ${formatDuration(t.maxDurationMs)}`, `${t.approvals === 1 ? "1 approval" : `${t.approvals} approvals`}`];
        if (t.reasonPattern) rules.push(`reason must match ${t.reasonPattern.source}`);
        return `${t.name}: ${rules.join(", ")}`;
      }));
    }
    case "whocan": {
      if (!parsed.target) return usage(command, "whocan <target>");
      const { policy, approvers } = await broker.whocan(parsed.target, person);
      return noticeView(
        `${policy.name} needs ${policy.approvals === 1 ? "1 approval" : `${policy.approvals} distinct approvals`} from:`,
        approvers.map((a) => (a.name && a.name !== a.entry ? `${a.name} (${a.entry})` : a.entry)),
      );
    }
    case "pending": {
      // What waits for this approver, with where each item's message is on the platform they asked on.
      const inbox = await broker.inbox(person, { platform: context.origin, limit: INBOX_LIMIT });
      return inboxView(inbox, now, knownTimeZone(context.timeZone));
    }
    case "whoami": {
      const identities = await broker.identitiesOf(person);
      const platformName = { slack: "Slack", teams: "Teams", console: "console", oidc: "OIDC" } as const;
      return noticeView(
        `You are ${person.displayName}${person.email ? ` <${person.email}>` : " (no email known)"}; linked identities:`,
        identities.map((i) => `${platformName[i.platform]}: ${i.externalId}${i.email ? ` (${i.email})` : ""}`),
      );
    }
    case "key": {
      const keys = new SshKeys(broker);
      const shape = "key add <public key> | key list | key remove <key-id or fingerprint>";
      if (parsed.action === "add") {
        if (!parsed.argument) return usage(command, "key add <public key>   (the line of your ~/.ssh/id_ed25519.pub)");
        const key = await keys.add(person, parsed.argument);
        return noticeView(
          `SSH key ${key.fingerprint} registered (${key.id}). While you hold a grant on an SSH target, \`ssh -p <port> <target>@<gateway>\` logs in with it.`,
        );
      }
      if (parsed.action === "list") {
        const list = await keys.list(person);
        if (list.length === 0) return noticeView(`You have no registered SSH keys. Add one with: ${command} key add <public key>`);
        return noticeView(
          "Your SSH keys:",
          list.map((k) => `${k.id}: ${k.fingerprint} ${k.publicKey.split(" ")[0]}${k.comment ? ` ${k.comment}` : ""}, added ${formatTime(k.createdAt, now, context.timeZone)}`),
        );
      }
      if (parsed.action === "remove") {
        if (!parsed.argument) return usage(command, "key remove <key-id or fingerprint>");
        const key = await keys.remove(person, parsed.argument);
        return noticeView(`SSH key ${key.fingerprint} (${key.id}) removed.`);
      }
      return usage(command, shape);
    }
  }
}

function usage(command: string, shape: string): MessageView {
  return noticeView(`Usage: ${command} ${shape}`);
}
