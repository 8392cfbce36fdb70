CREATE TABLE "session_seal_keys" (
	"session_id" text PRIMARY KEY NOT NULL,
	"key_id" text NOT NULL,
	"wrapped" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "statement_results" (
	"session_id" text NOT NULL,
	"seq" integer NOT NULL,
	"columns" jsonb NOT NULL,
	"data" text NOT NULL,
	"rows_kept" integer NOT NULL,
	"rows_total" integer NOT NULL,
	"cut" boolean NOT NULL,
	"sealed" text,
	CONSTRAINT "statement_results_session_id_seq_pk" PRIMARY KEY("session_id","seq")
);
--> statement-breakpoint
ALTER TABLE "step_up_challenges" ADD COLUMN "reveal" text;--> statement-breakpoint
ALTER TABLE "session_seal_keys" ADD CONSTRAINT "session_seal_keys_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "statement_results" ADD CONSTRAINT "statement_results_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE no action ON UPDATE no action;