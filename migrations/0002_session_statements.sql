CREATE TABLE "session_statements" (
	"session_id" text NOT NULL,
	"seq" integer NOT NULL,
	"protocol" text NOT NULL,
	"kind" text NOT NULL,
	"text" text NOT NULL,
	"parameters" jsonb,
	"verdict" text NOT NULL,
	"rule" text,
	"held_id" text,
	"started_at" timestamp with time zone NOT NULL,
	"duration_ms" integer,
	"rows" integer,
	"command_tag" text,
	"error" text,
	CONSTRAINT "session_statements_session_id_seq_pk" PRIMARY KEY("session_id","seq")
);
--> statement-breakpoint
ALTER TABLE "session_statements" ADD CONSTRAINT "session_statements_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE no action ON UPDATE no action;