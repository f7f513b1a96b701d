CREATE TABLE "audit_read_window" (
	"client_id" text NOT NULL,
	"read_key" text NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"event_id" text NOT NULL,
	"reads" integer NOT NULL,
	CONSTRAINT "audit_read_window_client_id_read_key_window_start_pk" PRIMARY KEY("client_id","read_key","window_start")
);
--> statement-breakpoint
CREATE INDEX "audit_read_window_event_idx" ON "audit_read_window" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX "audit_read_window_start_idx" ON "audit_read_window" USING btree ("window_start");