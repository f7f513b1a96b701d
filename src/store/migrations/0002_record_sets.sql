CREATE TABLE "record_set_assembly" (
	"service_request_id" text PRIMARY KEY NOT NULL,
	"status" text NOT NULL,
	"bundle_id" text,
	"withheld_bundle_id" text,
	"missing_required" jsonb NOT NULL,
	"missing_recommended" jsonb NOT NULL,
	"missing_documents" jsonb NOT NULL,
	"integrity_failures" jsonb NOT NULL,
	"too_large" jsonb NOT NULL,
	"consent" jsonb NOT NULL,
	"failure_reason" text,
	"attempts" integer NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
