CREATE TABLE "session_recordings" (
	"session_id" text NOT NULL,
	"channel" integer NOT NULL,
	"kind" text NOT NULL,
	"title" text,
	"format" text DEFAULT 'asciicast-v2' NOT NULL,
	"cast" text NOT NULL,
	"truncated" boolean DEFAULT false NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "session_recordings_session_id_channel_pk" PRIMARY KEY("session_id","channel")
);
--> statement-breakpoint
CREATE TABLE "ssh_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"person_id" text NOT NULL,
	"fingerprint" text NOT NULL,
	"public_key" text NOT NULL,
	"comment" text,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "ssh_keys_fingerprint_unique" UNIQUE("fingerprint")
);
--> statement-breakpoint
ALTER TABLE "session_recordings" ADD CONSTRAINT "session_recordings_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ssh_keys" ADD CONSTRAINT "ssh_keys_person_id_people_id_fk" FOREIGN KEY ("person_id") REFERENCES "public"."people"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "ssh_keys_person_idx" ON "ssh_keys" USING btree ("person_id");