CREATE TABLE "opinion_delivery" (
	"id" text PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"service_request_id" text NOT NULL,
	"participant_id" text NOT NULL,
	"status" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"remote_document" text,
	"remote_communication" text,
	"created_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	"delivered_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "opinion_delivery_task_idx" ON "opinion_delivery" USING btree ("task_id");--> statement-breakpoint
CREATE INDEX "opinion_delivery_service_request_idx" ON "opinion_delivery" USING btree ("service_request_id");