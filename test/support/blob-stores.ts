import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { type BlobBackend, type BlobStoreSettings, openBlobBackend, type S3BlobSettings } from '../../src/store/blob-backend.ts';

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
