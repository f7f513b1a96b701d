CREATE TABLE "blob_chunk" (
	"content_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"data" "bytea" NOT NULL,
	CONSTRAINT "blob_chunk_content_id_seq_pk" PRIMARY KEY("content_id","seq")
);
--> statement-breakpoint
CREATE TABLE "blob_content" (
	"id" uuid PRIMARY KEY NOT NULL,
	"created_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "blob" (
	"sha256" text PRIMARY KEY NOT NULL,
	"sha1" text NOT NULL,
	"size" bigint NOT NULL,
	"content_type" text NOT NULL,
	"chunk_size" integer NOT NULL,
	"chunk_count" integer NOT NULL,
	"content_id" uuid NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "blob_content_id_unique" UNIQUE("content_id")
);
--> statement-breakpoint
ALTER TABLE "blob_chunk" ADD CONSTRAINT "blob_chunk_content_id_blob_content_id_fk" FOREIGN KEY ("content_id") REFERENCES "blob_content"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "blob" ADD CONSTRAINT "blob_content_id_blob_content_id_fk" FOREIGN KEY ("content_id") REFERENCES "blob_content"("id") ON DELETE no action ON UPDATE no action;