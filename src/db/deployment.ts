import { randomBytes } from "node:crypto";
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
