CREATE TABLE "held_decisions" (
	"id" text PRIMARY KEY NOT NULL,
	"held_id" text NOT NULL,
	"approver_id" text NOT NULL,
	"verdict" text NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "held_statements" ADD COLUMN "approvals_required" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "step_up_challenges" ADD COLUMN "held_id" text;--> statement-breakpoint
ALTER TABLE "held_decisions" ADD CONSTRAINT "held_decisions_held_id_held_statements_id_fk" FOREIGN KEY ("held_id") REFERENCES "public"."held_statements"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "held_decisions" ADD CONSTRAINT "held_decisions_approver_id_people_id_fk" FOREIGN KEY ("approver_id") REFERENCES "public"."people"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "held_decisions_once_idx" ON "held_decisions" USING btree ("held_id","approver_id");--> statement-breakpoint
ALTER TABLE "step_up_challenges" ADD CONSTRAINT "step_up_challenges_held_id_held_statements_id_fk" FOREIGN KEY ("held_id") REFERENCES "public"."held_statements"("id") ON DELETE no action ON UPDATE no action;