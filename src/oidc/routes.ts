import type { ServerResponse } from "node:http";
import { formatDuration } from "../config/duration.js";
import type { Config } from "../config/schema.js";
import { BrokerError, SessionBroker, type Broker, type DecideResult } from "../broker/index.js";
import { revealedPage } from "../http/audit/results-view.js";
import { html, page, sendHtml } from "../infra/web/html.js";
import { sendJson, type HttpServer } from "../infra/web/http-server.js";
import { callbackUrlOf, finishAuthorization, startAuthorization } from "./authorization.js";
import type { OidcConsoleAuth } from "./console-login.js";
import { OidcError } from "./errors.js";
import { identifyVerified, type OidcVerifier } from "./verifier.js";

/** Where the proxies can be reached from outside, as `jitgate login` and `connect` need it. */
export interface PublicProxies {
  /** `ca`: where users keep the private CA's certificate (`proxy.postgres.tls.ca`), for `sslrootcert`. */
  postgres?: { address: string; tls: boolean; ca?: string | undefined } | undefined;
  ssh?: { address: string } | undefined;
}

/** What `GET /oidc/config` answers: public, no secret (the CLI reads it before anyone logs in). */
export interface GatewayOidcConfig {
  issuer: string;
  clientId: string;
  proxies: PublicProxies;
  targets: { name: string; kind: "postgres" | "ssh" }[];
}

export interface OidcRoutesOptions {
  broker: Broker;
  verifier: OidcVerifier;
  consoleAuth: OidcConsoleAuth;
  targets: Config["targets"];
  proxies: PublicProxies;
  /**
   * Sends the requester the connection line when a step-up approval issues the grant (the chat
   * adapter of the request's origin does it; see main.ts). Answers a note when it could not.
   */
  deliverConnection: (result: Pick<DecideResult, "request" | "grant" | "connection">) => Promise<string | undefined>;
  onError?: (error: unknown, where: string) => void;
}

function notice(res: ServerResponse, status: number, title: string, lines: string[]): void {
  sendHtml(res, status, page({ title, body: html`<section class="notice"><h1>${title}</h1>${lines.map((line) => html`<p>${line}</p>`)}</section>` }));
}

/**
 * The gateway's OIDC endpoints: `/oidc/config` for the CLI, `/oidc/approve` and `/oidc/callback`
 * for step-up approval (and an auditor's reveal on a `stepUp` target), `/oidc/login` and `/oidc/logout` for the console. The callback tells a
 * step-up login from a console login by where its `state` is kept (the challenge row, or Redis).
 */
export function mountOidcRoutes(http: HttpServer, options: OidcRoutesOptions): void {
  const { broker, verifier, consoleAuth } = options;

  http.route("GET", "/oidc/config", (_req, res) => {
    const body: GatewayOidcConfig = {
      issuer: verifier.config.issuer,
      clientId: verifier.config.clientId,
      proxies: options.proxies,
      targets: options.targets.map((t) => ({ name: t.name, kind: t.kind })),
    };
    sendJson(res, 200, body);
  });

  http.route("GET", "/oidc/approve", async (req, res) => {
    const challengeId = new URL(req.url ?? "/", "http://gateway").searchParams.get("challenge") ?? "";
    try {
      const challenge = await broker.stepUpChallenge(challengeId);
      const approver = await broker.person(challenge.approverId);
      const { url, pending } = await startAuthorization(verifier, { fresh: true, loginHint: approver?.email ?? undefined });
      await broker.startStepUpLogin(challenge.id, pending);
      res.writeHead(302, { location: url.toString(), "cache-control": "no-store", "referrer-policy": "no-referrer" });
      res.end();
    } catch (error) {
      answerFailure(res, error, options.onError);
    }
  });

  http.route("GET", "/oidc/callback", async (req, res) => {
    const query = new URL(req.url ?? "/", "http://gateway").searchParams;
    const state = query.get("state");
    if (!state) return notice(res, 400, "Sign-in failed", ["The provider's answer has no state; start again from the link or the page you came from."]);
    try {
      const challenge = await broker.stepUpChallengeByState(state);
      if (challenge) {
        await broker.stepUpChallenge(challenge.id); // used or expired: say so before talking to the provider
        const token = await finishAuthorization(verifier, callbackUrlOf(verifier.config.redirectUrl, req.url), {
          state,
          nonce: challenge.nonce ?? "",
          codeVerifier: challenge.codeVerifier ?? "",
        });
        if (!token.authTime) throw new OidcError("oidc_login_failed", "the provider did not say when you signed in (auth_time), so the sign-in cannot count as fresh");
        // The fresh sign-in's groups count for this approval (an approver by group:… who left it is one no more).
        const person = await identifyVerified(broker, token);
        if (challenge.reveal) {
          // An auditor's reveal of sealed results on a stepUp target: the statement and reason stored with the challenge.
          const done = await broker.completeRevealSignIn(person, { challengeId: challenge.id, authTime: token.authTime });
          if (done.outcome.kind !== "revealed") throw new OidcError("oidc_login_failed", "the reveal still asks for a sign-in");
          const { result, revealed, keyId } = done.outcome;
          const body = revealedPage({ sessionId: done.sessionId, seq: done.seq, reason: done.reason, result, revealed, keyId, by: person.displayName, signedInAs: token.email });
          return sendHtml(res, 200, page({ title: `Revealed: statement ${done.seq} of ${done.sessionId}`, body, section: "audit", head: html`<link rel="stylesheet" href="/audit/assets/audit.css">` }), { "referrer-policy": "no-referrer" });
        }
        if (challenge.heldId) {
          // The approval of a statement or command held in the request's thread.
          const held = await new SessionBroker(broker).approveWithStepUp(person, { challengeId: challenge.id, authTime: token.authTime });
          const outcome =
            held.state === "approved"
              ? "It has run (or runs now) in the session that holds it."
              : held.state === "held"
                ? "It runs once the other approvals it needs are given."
                : `It is ${held.state.replace("_", " ")}.`;
          return notice(res, 200, "Approval recorded", [`Your approval of held statement ${held.id} (${held.target}) is recorded, after a fresh sign-in as ${token.email}.`, outcome]);
        }
        const completed = await broker.completeStepUp(person, { challengeId: challenge.id, authTime: token.authTime });
        if (completed.kind === "break-glass") {
          const { grant, review } = completed.result;
          const lines = [
            `Break-glass access to ${grant.target} is granted (grant ${grant.id}), after a fresh sign-in as ${token.email}. The approvers have been alerted and will review it (${review.id}).`,
            (await options.deliverConnection(completed.result)) ?? "Your connection line is in a direct message.",
          ];
          return notice(res, 200, "Break-glass access granted", lines);
        }
        if (completed.kind === "auto-approval") {
          const { grant, rule } = completed.result;
          const lines = [
            `Access to ${grant.target} is approved by rule ${rule} (grant ${grant.id}), after a fresh sign-in as ${token.email}.`,
            (await options.deliverConnection(completed.result)) ?? "Your connection line is in a direct message.",
          ];
          return notice(res, 200, "Access approved by rule", lines);
        }
        const result = completed.result;
        const lines = [`Your approval of request ${result.request.id} (${result.request.target}) is recorded, after a fresh sign-in as ${token.email}.`];
        if (result.grant) {
          lines.push(`The quorum is met: access is granted for ${formatDuration(result.request.durationMs)}.`);
          lines.push((await options.deliverConnection(result)) ?? "The requester has the connection line in a direct message.");
        } else lines.push(`${result.approvals} of ${result.required} approvals so far.`);
        return notice(res, 200, "Approval recorded", lines);
      }
      const pending = await consoleAuth.takePending(state);
      if (pending) return await consoleAuth.completeLogin(req, callbackUrlOf(verifier.config.redirectUrl, req.url), pending, res);
      return notice(res, 400, "Sign-in failed", ["This sign-in is unknown or has expired (or was already used). Start again from the link or the page you came from."]);
    } catch (error) {
      answerFailure(res, error, options.onError);
    }
  });

  http.route("GET", "/oidc/login", (req, res) => consoleAuth.startLogin(req, res));
  http.route("GET", "/oidc/logout", (req, res) => consoleAuth.logout(req, res));
}

function answerFailure(res: ServerResponse, error: unknown, onError?: (error: unknown, where: string) => void): void {
  if (error instanceof BrokerError) return notice(res, 403, "Not recorded", [capitalize(error.message) + "."]);
  if (error instanceof OidcError) {
    if (error.code === "oidc_provider_unreachable") onError?.(error, "oidc provider");
    return notice(res, error.code === "oidc_provider_unreachable" ? 503 : 403, "Sign-in failed", [capitalize(error.message) + ". Nothing was recorded."]);
  }
  onError?.(error, "oidc route");
  notice(res, 500, "Something went wrong", ["Nothing was recorded; it has been logged. Please try again."]);
}

const capitalize = (text: string) => text.charAt(0).toUpperCase() + text.slice(1);
