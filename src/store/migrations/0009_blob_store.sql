ALTER TABLE "blob" ALTER COLUMN "chunk_size" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "blob" ALTER COLUMN "chunk_count" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "blob" ALTER COLUMN "content_id" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "blob" ADD COLUMN "object_key" text;--> statement-breakpoint
ALTER TABLE "blob" ADD CONSTRAINT "blob_object_key_unique" UNIQUE("object_key");