ALTER TABLE "decisions" ALTER COLUMN "approver_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "decisions" ADD COLUMN "rule" text;