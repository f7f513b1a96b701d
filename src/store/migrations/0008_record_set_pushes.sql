CREATE TABLE "record_set_push" (
	"id" text PRIMARY KEY NOT NULL,
	"participant_id" text NOT NULL,
	"task_id" text NOT NULL,
	"service_request_id" text NOT NULL,
	"bundle_id" text NOT NULL,
	"status" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"last_outcome" jsonb,
	"remote" jsonb,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"pushed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE UNIQUE INDEX "record_set_push_bundle_participant_idx" ON "record_set_push" USING btree ("bundle_id","participant_id");--> statement-breakpoint
CREATE INDEX "record_set_push_task_idx" ON "record_set_push" USING btree ("task_id");