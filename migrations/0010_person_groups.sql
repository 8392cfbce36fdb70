CREATE TABLE "person_groups" (
	"person_id" text NOT NULL,
	"source" text NOT NULL,
	"groups" jsonb NOT NULL,
	"refreshed_at" timestamp with time zone NOT NULL,
	CONSTRAINT "person_groups_person_id_source_pk" PRIMARY KEY("person_id","source")
);
--> statement-breakpoint
CREATE TABLE "slack_user_groups" (
	"id" text PRIMARY KEY NOT NULL,
	"handle" text NOT NULL,
	"name" text NOT NULL,
	"members" jsonb NOT NULL,
	"refreshed_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "person_groups" ADD CONSTRAINT "person_groups_person_id_people_id_fk" FOREIGN KEY ("person_id") REFERENCES "public"."people"("id") ON DELETE no action ON UPDATE no action;