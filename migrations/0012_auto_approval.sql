ALTER TABLE "decisions" ALTER COLUMN "approver_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "decisions" ADD COLUMN "rule" text;--> statement-breakpoint
ALTER TABLE "decisions" ADD CONSTRAINT "decisions_by_person_or_rule" CHECK (("decisions"."approver_id" is null) <> ("decisions"."rule" is null));