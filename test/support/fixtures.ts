import { parseConfig } from "../../src/config/load.js";
import type { Config } from "../../src/config/schema.js";

/** A small configuration for broker-level tests: approvers by email and by chat id, quorum 2, a ticket pattern. */
export function brokerConfig(overrides = ""): Config {
  return parseConfig(
    `
defaults: { maxDuration: 8h, approvals: 1, requestTtl: 1h }
proxy:
  postgres: { listen: 127.0.0.1:15432, publicAddress: db-gw.example.com:15432 }
  ssh: { listen: 127.0.0.1:2222, publicAddress: ssh-gw.example.com:2222 }
targets:
  - name: orders-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/orders
    approvers: [lead@example.com, U0LEAD42]
    maxDuration: 4h
    reasonPattern: "^(INC|JIRA)-[0-9]+"
  - name: payments-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/payments
    approvers: [lead@example.com, second@example.com, dev@example.com]
    approvals: 2
  - name: web-1
    kind: ssh
    upstream: ssh://deploy@127.0.0.1:22
    privateKeyFile: ./secrets/web-1
    hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
    approvers: [lead@example.com]
${overrides}`,
    "test config",
    {},
  );
}
