CREATE TABLE "chat_conversations" (
	"platform" text NOT NULL,
	"external_id" text NOT NULL,
	"conversation_id" text NOT NULL,
	"service_url" text NOT NULL,
	"tenant_id" text,
	"reference" jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "chat_conversations_platform_external_id_pk" PRIMARY KEY("platform","external_id")
);
