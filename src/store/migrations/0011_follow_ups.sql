CREATE TABLE "follow_up" (
	"id" text PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"service_request_id" text NOT NULL,
	"participant_id" text NOT NULL,
	"consultant_id" text NOT NULL,
	"asked_at" timestamp with time zone NOT NULL,
	"due_at" timestamp with time zone NOT NULL,
	"answer_id" text,
	"answered_at" timestamp with time zone,
	"delivery_status" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"last_outcome" jsonb,
	"remote_question" text,
	"remote_answer" text,
	"updated_at" timestamp with time zone NOT NULL,
	"delivered_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "follow_up_task_idx" ON "follow_up" USING btree ("task_id");--> statement-breakpoint
CREATE INDEX "follow_up_service_request_idx" ON "follow_up" USING btree ("service_request_id");