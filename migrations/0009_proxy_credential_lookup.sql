ALTER TABLE "deployment" ADD COLUMN "credential_key" text;--> statement-breakpoint
-- Credentials issued before this migration have no lookup hash and a random SCRAM salt: they are
-- void (README, "Upgrading"); their grants stay live and their holders can ask again.
DELETE FROM "grant_credentials";--> statement-breakpoint
ALTER TABLE "grant_credentials" ADD COLUMN "lookup" text NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "grant_credentials_lookup_idx" ON "grant_credentials" USING btree ("lookup");
