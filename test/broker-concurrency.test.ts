import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import { Broker, type Person } from "../src/broker/index.js";
import { openStorage, type Storage } from "../src/db/client.js";
import { grants } from "../src/db/schema.js";
import { testPostgresStorage } from "./support/databases.js";
import { brokerConfig } from "./support/fixtures.js";

// A quorum-1 target with three approvers, for the race of three real approvers.
const RACE_TARGET = `
  - name: race-db
    kind: postgres
    upstream: postgres://gw@127.0.0.1:5432/race
    approvers: [lead@example.com, second@example.com, dev@example.com]
    approvals: 1
`;

// Two replicas: two brokers, each with its own connection pool, on one database.
let storage: Storage & { url: string };
let second: Storage;
let a: Broker, b: Broker;

beforeAll(async () => {
  storage = await testPostgresStorage("concurrency");
  second = await openStorage({ url: storage.url, dataDir: "unused" });
  a = new Broker({ db: storage.db, config: brokerConfig(RACE_TARGET) });
  b = new Broker({ db: second.db, config: brokerConfig(RACE_TARGET) });
  await a.syncTargets();
});

afterAll(async () => {
  await second?.close();
  await storage?.close();
});

async function people(n: number): Promise<Person[]> {
  const out: Person[] = [];
  for (const email of ["lead@example.com", "second@example.com", "dev@example.com"].slice(0, n)) {
    out.push(await a.identify({ platform: "slack", externalId: email, email, displayName: email }));
  }
  return out;
}

describe("concurrent decisions on two replicas", () => {
  it("three approvers clicking at once on a quorum-1 request (one of them twice) issue exactly one grant", async () => {
    const [lead, secondLead, third] = await people(3);
    for (let round = 0; round < 10; round++) {
      const requester = await a.identify({ platform: "slack", externalId: `R${round}`, email: `r${round}@example.com` });
      const request = await a.request(requester, { target: "race-db", duration: "1h", reason: "deploy" });
      const results = await Promise.allSettled([
        a.decide(lead!, { requestId: request.id, verdict: "approve" }),
        b.decide(lead!, { requestId: request.id, verdict: "approve" }),
        b.decide(secondLead!, { requestId: request.id, verdict: "approve" }),
        a.decide(third!, { requestId: request.id, verdict: "approve" }),
      ]);
      const issued = await storage.db.select().from(grants).where(eq(grants.requestId, request.id));
      expect(issued).toHaveLength(1);
      const granted = results.filter((r) => r.status === "fulfilled" && r.value.grant);
      expect(granted).toHaveLength(1);
      // Every one of them may approve: a loser is told the request was decided, never anything else.
      for (const r of results) {
        if (r.status === "rejected") expect((r.reason as { code: string }).code).toMatch(/^broker_(already_decided|request_not_pending)$/);
      }
    }
  });

  it("quorum 2 met by two approvers at once on two replicas issues exactly one grant", async () => {
    const [lead, secondLead] = await people(2);
    for (let round = 0; round < 10; round++) {
      const requester = await a.identify({ platform: "teams", externalId: `Q${round}`, email: `q${round}@example.com` });
      const request = await a.request(requester, { target: "payments-db", duration: "1h", reason: "migrate" });
      const [first, other] = await Promise.all([
        a.decide(lead!, { requestId: request.id, verdict: "approve" }),
        b.decide(secondLead!, { requestId: request.id, verdict: "approve" }),
      ]);
      expect([first.approvals, other.approvals].sort()).toEqual([1, 2]);
      expect([first.grant, other.grant].filter(Boolean)).toHaveLength(1);
      expect(await storage.db.select().from(grants).where(eq(grants.requestId, request.id))).toHaveLength(1);
    }
  });
});
