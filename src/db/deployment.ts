import { randomBytes } from "node:crypto";
import { isNull } from "drizzle-orm";
import type { Executor } from "./client.js";
import { deployment } from "./schema.js";

/**
 * This deployment's id: made at first start and kept in its own database, so every replica on that
 * database reads the same one, and a fresh database (a demo's deleted ./data, a staging copy) is
 * another deployment. Replicas starting at once race on the one row; the first insert wins and
 * everyone reads it.
 */
export async function deploymentId(db: Executor): Promise<string> {
  await db.insert(deployment).values({ id: randomBytes(8).toString("hex") }).onConflictDoNothing();
  const [row] = await db.select({ id: deployment.id }).from(deployment);
  if (!row) throw new Error("the deployment row is missing after its insert");
  return row.id;
}

/**
 * The key of credential lookups and SCRAM salts (broker/credentials.ts): 256 random bits made once
 * per deployment and kept with its row, so every replica hashes alike. Replicas racing to make it
 * keep the first one written.
 */
export async function deploymentCredentialKey(db: Executor): Promise<Buffer> {
  await deploymentId(db);
  await db.update(deployment).set({ credentialKey: randomBytes(32).toString("base64") }).where(isNull(deployment.credentialKey));
  const [row] = await db.select({ key: deployment.credentialKey }).from(deployment);
  if (!row?.key) throw new Error("the deployment's credential key is missing after it was made");
  return Buffer.from(row.key, "base64");
}
