CREATE TABLE "record_set_attachment" (
	"bundle_id" text NOT NULL,
	"sha256" text NOT NULL,
	CONSTRAINT "record_set_attachment_bundle_id_sha256_pk" PRIMARY KEY("bundle_id","sha256")
);
--> statement-breakpoint
ALTER TABLE "intake_request" ADD COLUMN "added_documents" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "intake_request" ADD COLUMN "records_revision" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "record_set_assembly" ADD COLUMN "records_revision" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "record_set_attachment" ADD CONSTRAINT "record_set_attachment_sha256_blob_sha256_fk" FOREIGN KEY ("sha256") REFERENCES "blob"("sha256") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "record_set_attachment_sha256_idx" ON "record_set_attachment" USING btree ("sha256");