import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { count } from 'drizzle-orm';
import S3rver from 's3rver';
import { afterAll, beforeAll } from 'vitest';
import { type BlobBackend, type BlobStoreSettings, openBlobBackend, type S3BlobSettings } from '../../src/store/blob-backend.ts';
import { BlobStore } from '../../src/store/blob-store.ts';
import type { Database } from '../../src/store/database.ts';
import { blobs } from '../../src/store/schema.ts';
import { openTestDatabase } from './database.ts';

export type BlobStoreKind = 'files' | 's3';
export const BLOB_STORE_KINDS: readonly BlobStoreKind[] = ['files', 's3'];

const BUCKET = 'attachments';
/** s3rver's fixed credentials. */
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3Server {
  endpoint: string;
  bucket: string;
  /** Settings of an S3 blob store in this server's bucket under `prefix`. */
  settings(prefix: string): S3BlobSettings;
  /** The service's environment for the same. */
  env(prefix: string): Record<string, string>;
  stop(): Promise<void>;
}

/** s3rver on a free port of 127.0.0.1 with its files in a temp directory, removed by `stop()`. */
export async function startS3Server(): Promise<TestS3Server> {
  const directory = await mkdtemp(path.join(tmpdir(), 's3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: BUCKET }] });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket: BUCKET,
    settings: (prefix) => ({ kind: 's3', bucket: BUCKET, prefix, endpoint, region: 'us-east-1', credentials: CREDENTIALS, forcePathStyle: true, partSize: 5 * 1024 * 1024 }),
    env: (prefix) => ({
      BLOB_STORE: 's3',
      BLOB_S3_BUCKET: BUCKET,
      BLOB_S3_PREFIX: prefix,
      BLOB_S3_ENDPOINT: endpoint,
      BLOB_S3_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      BLOB_S3_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      BLOB_S3_FORCE_PATH_STYLE: 'true',
    }),
    async stop() {
      server.httpServer?.closeAllConnections();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** A blob backend of one kind for a test file, with what the tests look at and a cleanup. */
export interface TestBlobBackend {
  kind: BlobStoreKind;
  settings: BlobStoreSettings;
  backend: BlobBackend;
  /** Everything the backend holds, finished or not: object keys and temporary files. */
  contents(): Promise<{ objects: string[]; temporary: string[] }>;
  close(): Promise<void>;
}

let prefixes = 0;

/** A fresh, empty backend: a temp directory, or a fresh prefix in `s3` (a started s3rver). */
export async function openTestBlobBackend(kind: BlobStoreKind, s3?: TestS3Server): Promise<TestBlobBackend> {
  if (kind === 'files') {
    const dir = await mkdtemp(path.join(tmpdir(), 'blobs-'));
    const settings: BlobStoreSettings = { kind: 'files', dir };
    const backend = await openBlobBackend(settings);
    return {
      kind,
      settings,
      backend,
      async contents() {
        const all = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
        return { objects: all.filter((f) => !f.startsWith('tmp')), temporary: all.filter((f) => f.startsWith('tmp')) };
      },
      async close() {
        await backend.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  if (!s3) throw new Error('an s3 backend needs a started S3 server');
  const settings = s3.settings(`t${process.pid}-${++prefixes}/`);
  const backend = await openBlobBackend(settings);
  const client = new S3Client({ region: settings.region, endpoint: settings.endpoint, credentials: settings.credentials, forcePathStyle: true });
  return {
    kind,
    settings,
    backend,
    async contents() {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: settings.bucket, Prefix: settings.prefix }));
      return { objects: (listed.Contents ?? []).map((o) => o.Key as string), temporary: [] };
    },
    async close() {
      client.destroy();
      await backend.close();
    },
  };
}

/** A BlobStore of one kind over a fresh test database, set up and closed around a `describe`. */
export interface BlobStoreFixture {
  readonly database: Database;
  readonly backing: TestBlobBackend;
  readonly store: BlobStore;
  /** Metadata rows, stored objects and leftovers: what "nothing was stored" compares. */
  held(): Promise<{ blobs: number | undefined; objects: number; temporary: number }>;
}

/**
 * Registers the hooks of a `describe.each(BLOB_STORE_KINDS)` block: the fixture's fields are
 * there from its `beforeAll` on. `s3` gives the file's S3 server (`useS3Server`).
 */
export function useBlobStoreFixture(kind: BlobStoreKind, s3: () => TestS3Server): BlobStoreFixture {
  const f = {} as { database: Database; backing: TestBlobBackend; store: BlobStore };
  beforeAll(async () => {
    f.database = await openTestDatabase();
    f.backing = await openTestBlobBackend(kind, s3());
    f.store = new BlobStore(f.database.db, f.backing.backend);
  });
  afterAll(async () => {
    await f.backing?.close();
    await f.database?.close();
  });
  return {
    get database() {
      return f.database;
    },
    get backing() {
      return f.backing;
    },
    get store() {
      return f.store;
    },
    async held() {
      const [b] = await f.database.db.select({ n: count() }).from(blobs);
      const { objects, temporary } = await f.backing.contents();
      return { blobs: b?.n, objects: objects.length, temporary: temporary.length };
    },
  };
}

/** One S3 server for the test file, started before its tests and stopped after. */
export function useS3Server(): () => TestS3Server {
  let s3: TestS3Server | undefined;
  beforeAll(async () => {
    s3 = await startS3Server();
  });
  afterAll(async () => s3?.stop());
  return () => {
    if (!s3) throw new Error('the S3 server is not started yet');
    return s3;
  };
}
