ALTER TABLE "opinion_delivery" ADD COLUMN "last_outcome" jsonb;--> statement-breakpoint
ALTER TABLE "record_set_assembly" ADD COLUMN "failure_outcome" jsonb;