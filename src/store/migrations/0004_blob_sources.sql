CREATE TABLE "blob_source" (
	"sha256" text NOT NULL,
	"participant_id" text NOT NULL,
	CONSTRAINT "blob_source_sha256_participant_id_pk" PRIMARY KEY("sha256","participant_id")
);
--> statement-breakpoint
ALTER TABLE "blob_source" ADD CONSTRAINT "blob_source_sha256_blob_sha256_fk" FOREIGN KEY ("sha256") REFERENCES "blob"("sha256") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "blob_sha1_size_idx" ON "blob" USING btree ("sha1","size");