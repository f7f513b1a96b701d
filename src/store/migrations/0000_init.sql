CREATE TABLE "intake_request" (
	"participant_id" text NOT NULL,
	"request_id" text NOT NULL,
	"content_hash" text NOT NULL,
	"service_request_id" text NOT NULL,
	"task_ids" text[] NOT NULL,
	"request" jsonb NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	CONSTRAINT "intake_request_participant_id_request_id_pk" PRIMARY KEY("participant_id","request_id")
);
--> statement-breakpoint
CREATE TABLE "resource_history" (
	"resource_type" text NOT NULL,
	"id" text NOT NULL,
	"version_id" integer NOT NULL,
	"last_updated" timestamp with time zone NOT NULL,
	"content" jsonb NOT NULL,
	"access" text[] NOT NULL,
	CONSTRAINT "resource_history_resource_type_id_version_id_pk" PRIMARY KEY("resource_type","id","version_id")
);
--> statement-breakpoint
CREATE TABLE "resource" (
	"resource_type" text NOT NULL,
	"id" text NOT NULL,
	"version_id" integer NOT NULL,
	"last_updated" timestamp with time zone NOT NULL,
	"content" jsonb NOT NULL,
	"access" text[] NOT NULL,
	CONSTRAINT "resource_resource_type_id_pk" PRIMARY KEY("resource_type","id")
);
--> statement-breakpoint
CREATE TABLE "client_assertion_jti" (
	"client_id" text NOT NULL,
	"jti" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	CONSTRAINT "client_assertion_jti_client_id_jti_pk" PRIMARY KEY("client_id","jti")
);
--> statement-breakpoint
CREATE UNIQUE INDEX "intake_request_service_request_idx" ON "intake_request" USING btree ("service_request_id");--> statement-breakpoint
CREATE INDEX "resource_content_idx" ON "resource" USING gin ("content" jsonb_path_ops);--> statement-breakpoint
CREATE INDEX "resource_access_idx" ON "resource" USING gin ("access");--> statement-breakpoint
CREATE INDEX "resource_type_updated_idx" ON "resource" USING btree ("resource_type","last_updated","id");--> statement-breakpoint
CREATE INDEX "client_assertion_jti_expires_idx" ON "client_assertion_jti" USING btree ("expires_at");