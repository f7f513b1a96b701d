import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { BlobBackend, BlobUpload, S3BlobSettings } from './blob-backend.ts';

const MiB = 1024 * 1024;
const KEY = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Blobs as objects in an S3-compatible bucket, under `<prefix>blobs/<uuid>`. S3 has no rename,
 * so an object's key is not its hash (that would cost a server-side copy of every object):
 * the upload streams (multipart above one part, `@aws-sdk/lib-storage`) to a fresh key, which
 * the `blob` row records once the upload completed. An upload that never completed is an
 * incomplete multipart upload; one whose row was never inserted is an object no row names:
 * `sweep` aborts and deletes both once they are older than its cut-off.
 */
export class S3BlobBackend implements BlobBackend {
  readonly kind = 's3';
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly root: string;
  private readonly partSize: number;
  /** SHA-256 (hex) of the whole object, by key, while a one-part upload is being committed. */
  private readonly payloadHashes = new Map<string, string>();

  constructor(settings: S3BlobSettings) {
    this.client = new S3Client({
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      ...(settings.credentials ? { credentials: settings.credentials } : {}),
      // Checksums only where S3 requires them: many S3-compatible servers refuse the newer
      // trailing-checksum uploads. Integrity is checked against the SHA-256 anyway.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    this.bucket = settings.bucket;
    this.root = `${settings.prefix}blobs/`;
    this.partSize = Math.max(5 * MiB, settings.partSize ?? 8 * MiB);
    // An object smaller than a part goes up in one PutObject whose body is the whole object, whose
    // SHA-256 the blob store has just computed: it is given as the signed payload hash
    // (x-amz-content-sha256), which S3 checks, rather than computed a second time by the signer.
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: unknown }).Key;
        const hash = context.commandName === 'PutObjectCommand' && typeof key === 'string' ? this.payloadHashes.get(key) : undefined;
        const request = args.request as { headers?: Record<string, string> } | undefined;
        if (hash && request?.headers) request.headers['x-amz-content-sha256'] = hash;
        return next(args);
      },
      { step: 'build', name: 'blobPayloadSha256' },
    );
  }

  async begin(): Promise<BlobUpload> {
    const key = `${this.root}${randomUUID()}`;
    const body = new PassThrough({ highWaterMark: MiB });
    const upload = new Upload({ client: this.client, params: { Bucket: this.bucket, Key: key, Body: body }, partSize: this.partSize, queueSize: 2, leavePartsOnError: false });
    const done = upload.done();
    done.catch(() => undefined); // awaited by commit; abort and write race it
    const failed = done.then(
      () => new Error('upload ended before its body'),
      (err: unknown) => err,
    );
    return {
      async write(piece) {
        if (body.write(piece)) return;
        const outcome = await Promise.race([once(body, 'drain').then(() => undefined), failed]);
        if (outcome) throw outcome;
      },
      commit: async (sha256) => {
        this.payloadHashes.set(key, sha256);
        try {
          body.end();
          await done;
        } finally {
          this.payloadHashes.delete(key);
        }
        return key;
      },
      abort: async () => {
        await upload.abort().catch(() => undefined);
        body.destroy();
        await done.catch(() => undefined);
        await this.remove(key).catch(() => undefined);
      },
    };
  }

  /**
   * A ranged GetObject. What comes back is cut to exactly the range asked for: a server that
   * ignores `Range` (200, the whole object) or serves more than asked still yields only it.
   */
  async read(key: string, start: number, end: number): Promise<Readable> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}` }));
    if (!(res.Body instanceof Readable)) throw new Error('S3 GetObject returned no stream');
    const servedFrom = Number(/^bytes (\d+)-/.exec(res.ContentRange ?? '')?.[1] ?? 0);
    const length = end - start + 1;
    if (servedFrom === start && res.ContentLength === length) return res.Body;
    if (servedFrom > start) {
      res.Body.destroy();
      throw new Error(`S3 served bytes from ${servedFrom} for a range from ${start}`);
    }
    return Readable.from(cut(res.Body, start - servedFrom, length), { objectMode: false });
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
      throw err;
    }
  }

  async remove(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async sweep(olderThan: Date, referenced: (keys: string[]) => Promise<Set<string>>): Promise<number> {
    let removed = 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.root, ContinuationToken: token }));
      const old = (page.Contents ?? [])
        .filter((o) => o.Key && KEY.test(o.Key.slice(this.root.length)) && o.LastModified && o.LastModified < olderThan)
        .map((o) => o.Key as string);
      if (old.length > 0) {
        const known = await referenced(old);
        for (const key of old) {
          if (known.has(key)) continue;
          await this.remove(key);
          removed++;
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return removed + (await this.abortIncompleteUploads(olderThan));
  }

  /**
   * Aborts multipart uploads begun before `olderThan` (their process died). A server without
   * ListMultipartUploads (some S3-compatible ones) is left to a bucket lifecycle rule
   * (AbortIncompleteMultipartUpload).
   */
  private async abortIncompleteUploads(olderThan: Date): Promise<number> {
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.root, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
      } catch (err) {
        if ((err as { name?: string }).name === 'NotImplemented') return removed;
        throw err;
      }
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated || u.Initiated >= olderThan) continue;
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }));
        removed++;
      }
      if (!page.IsTruncated) return removed;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

/** `length` bytes of `body` after skipping `skip`; the body is closed once they are out. */
async function* cut(body: Readable, skip: number, length: number): AsyncGenerator<Buffer> {
  try {
    for await (const piece of body as AsyncIterable<Buffer>) {
      let part = piece;
      if (skip > 0) {
        const n = Math.min(skip, part.length);
        skip -= n;
        part = part.subarray(n);
      }
      if (part.length === 0) continue;
      if (part.length >= length) {
        yield part.subarray(0, length);
        return;
      }
      length -= part.length;
      yield part;
    }
  } finally {
    body.destroy();
  }
}
