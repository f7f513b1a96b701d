CREATE TABLE "subscription_event" (
	"subscription_id" text NOT NULL,
	"event_number" bigint NOT NULL,
	"focus_type" text NOT NULL,
	"focus_id" text NOT NULL,
	"focus_version" text NOT NULL,
	"occurred_at" timestamp with time zone NOT NULL,
	CONSTRAINT "subscription_event_subscription_id_event_number_pk" PRIMARY KEY("subscription_id","event_number")
);
--> statement-breakpoint
CREATE TABLE "subscription" (
	"id" text PRIMARY KEY NOT NULL,
	"participant_id" text NOT NULL,
	"reader_keys" text[] NOT NULL,
	"filters" jsonb NOT NULL,
	"endpoint" text NOT NULL,
	"headers" text[] NOT NULL,
	"payload" text NOT NULL,
	"heartbeat_seconds" integer,
	"status" text NOT NULL,
	"events_since_start" bigint DEFAULT 0 NOT NULL,
	"last_error" text,
	"failed_attempts" integer DEFAULT 0 NOT NULL,
	"next_heartbeat_at" timestamp with time zone,
	"end_at" timestamp with time zone,
	"content" jsonb NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "subscription_event" ADD CONSTRAINT "subscription_event_subscription_id_subscription_id_fk" FOREIGN KEY ("subscription_id") REFERENCES "subscription"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "subscription_participant_idx" ON "subscription" USING btree ("participant_id");--> statement-breakpoint
CREATE INDEX "subscription_reader_keys_idx" ON "subscription" USING gin ("reader_keys");