import type { Attachment } from '@medplum/fhirtypes';
import { and, eq, inArray } from 'drizzle-orm';
import type { Db } from '../store/database.ts';
import { blobSources, blobs as blobTable } from '../store/schema.ts';
import type { StoredAttachment } from './record-set-bundle.ts';

/** Rows per statement: keeps the parameter lists well under PostgreSQL's 65,535. */
const BATCH = 500;

const keyOf = (sha1: string, size: number) => `${size}:${sha1}`;

/**
 * The blobs one referrer's EHR gave us (`blob_source`), read and written in bulk: one query for
 * the declared attachments of a page of records before they are fetched, and one insert of what
 * was fetched once the fetching is over (or has failed half-way, so that the retry skips what
 * was stored), instead of two round trips per attachment.
 *
 * Bytes another organization supplied are never reused on a declared hash alone: only blobs
 * this referrer's EHR supplied are found here.
 */
export class ReferrerBlobs {
  private readonly db: Db;
  private readonly referrer: string;
  private readonly known = new Map<string, StoredAttachment>();
  private readonly fetched = new Set<string>();

  constructor(db: Db, referrer: string) {
    this.db = db;
    this.referrer = referrer;
  }

  /** Looks up, at once, the bytes this referrer already gave us among those `attachments` declare (size and SHA-1). */
  async lookUp(attachments: readonly Attachment[]): Promise<void> {
    const declared = [...new Set(attachments.filter((a) => a.size !== undefined && a.hash && this.find(a) === undefined).map((a) => a.hash as string))];
    for (let i = 0; i < declared.length; i += BATCH) {
      const rows = await this.db
        .select({ sha256: blobTable.sha256, sha1: blobTable.sha1, size: blobTable.size, contentType: blobTable.contentType })
        .from(blobTable)
        .innerJoin(blobSources, and(eq(blobSources.sha256, blobTable.sha256), eq(blobSources.participantId, this.referrer)))
        .where(inArray(blobTable.sha1, declared.slice(i, i + BATCH)));
      for (const row of rows) this.known.set(keyOf(row.sha1, row.size), row);
    }
  }

  /** The stored bytes matching the attachment's declared size and SHA-1, when this referrer supplied them. */
  find(attachment: Attachment): StoredAttachment | undefined {
    if (attachment.size === undefined || !attachment.hash) return undefined;
    return this.known.get(keyOf(attachment.hash, attachment.size));
  }

  /** Notes bytes fetched from this referrer's EHR (recorded by {@link save}). */
  add(stored: StoredAttachment): void {
    this.fetched.add(stored.sha256);
    this.known.set(keyOf(stored.sha1, stored.size), stored);
  }

  /** Records every blob noted since the last save as supplied by this referrer. */
  async save(): Promise<void> {
    const rows = [...this.fetched].map((sha256) => ({ sha256, participantId: this.referrer }));
    this.fetched.clear();
    for (let i = 0; i < rows.length; i += BATCH) {
      await this.db.insert(blobSources).values(rows.slice(i, i + BATCH)).onConflictDoNothing();
    }
  }
}
