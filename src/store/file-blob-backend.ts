import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { type BlobBackend, type BlobUpload, fanOutPath } from './blob-backend.ts';

/** Bytes gathered before one writev(2): fewer, larger writes, one in flight while the next pieces arrive. */
const WRITE_BUFFER = 1024 * 1024;
const SWEEP_BATCH = 500;

/**
 * Blobs as files under one directory, content-addressed: `<dir>/aa/bb/<sha256>`. An upload is
 * written to `<dir>/tmp/<uuid>` while it is hashed, fsync'd, renamed into place and the
 * directory fsync'd: a crash leaves either the whole file at its address or a temporary file
 * (swept). Identical content renamed over an existing file replaces it with the same bytes.
 */
export class FileBlobBackend implements BlobBackend {
  readonly kind = 'files';
  readonly dir: string;
  private readonly tmp: string;
  /** Fan-out directories known to exist (there are at most 65,536). */
  private readonly made = new Set<string>();

  private constructor(dir: string) {
    this.dir = path.resolve(dir);
    this.tmp = path.join(this.dir, 'tmp');
  }

  static async open(dir: string): Promise<FileBlobBackend> {
    const backend = new FileBlobBackend(dir);
    await mkdir(backend.tmp, { recursive: true });
    return backend;
  }

  async begin(): Promise<BlobUpload> {
    const file = path.join(this.tmp, randomUUID());
    const handle = await open(file, 'wx', 0o600);
    return new FileUpload(this, file, handle);
  }

  async read(key: string, start: number, end: number): Promise<Readable> {
    const handle = await open(this.fileOf(key), 'r');
    return handle.createReadStream({ start, end, highWaterMark: 256 * 1024 });
  }

  async exists(key: string): Promise<boolean> {
    return stat(this.fileOf(key)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  async remove(key: string): Promise<void> {
    await unlink(this.fileOf(key)).catch(ignoreMissing);
  }

  /**
   * Content-addressed files can come back: a put of the same bytes may rename a fresh file onto
   * an orphan's path just as the sweep deletes it, and then insert its row. So an orphan is
   * first renamed away into `tmp/swept-<sha256>-<uuid>` (atomic), and put back when what was
   * moved turns out to be fresh; a sweep that dies in between leaves that name, which the next
   * sweep puts back if a row names the blob by then and its file is missing.
   */
  async sweep(olderThan: Date, referenced: (keys: string[]) => Promise<Set<string>>): Promise<number> {
    const cutoff = olderThan.getTime();
    let removed = 0;
    const leftovers = await readdir(this.tmp).catch(() => [] as string[]);
    const swept = leftovers.map((name) => /^swept-([0-9a-f]{64})-/.exec(name)?.[1]).filter((sha): sha is string => sha !== undefined);
    const wanted = swept.length > 0 ? await referenced(swept.map(fanOutPath)) : new Set<string>();
    for (const name of leftovers) {
      const file = path.join(this.tmp, name);
      const sha = /^swept-([0-9a-f]{64})-/.exec(name)?.[1];
      if (sha && wanted.has(fanOutPath(sha)) && !(await this.exists(fanOutPath(sha)))) {
        await rename(file, path.join(this.dir, fanOutPath(sha))).catch(ignoreMissing);
        continue;
      }
      const s = await stat(file).catch(() => undefined);
      if (s && s.mtimeMs < cutoff) {
        await unlink(file).catch(ignoreMissing);
        removed++;
      }
    }
    let batch: string[] = [];
    const flush = async () => {
      const known = await referenced(batch);
      for (const key of batch) {
        if (!known.has(key) && (await this.removeIfOld(key, cutoff))) removed++;
      }
      batch = [];
    };
    for (const a of await hexDirs(this.dir)) {
      for (const b of await hexDirs(path.join(this.dir, a))) {
        for (const name of await readdir(path.join(this.dir, a, b))) {
          if (!/^[0-9a-f]{64}$/.test(name)) continue;
          const s = await stat(path.join(this.dir, a, b, name)).catch(() => undefined);
          if (!s || s.mtimeMs >= cutoff) continue;
          batch.push(fanOutPath(name));
          if (batch.length >= SWEEP_BATCH) await flush();
        }
      }
    }
    if (batch.length > 0) await flush();
    return removed;
  }

  /** Deletes the file at `key` if it is still older than `cutoff` once moved out of the way. */
  private async removeIfOld(key: string, cutoff: number): Promise<boolean> {
    const file = this.fileOf(key);
    const aside = path.join(this.tmp, `swept-${path.basename(key)}-${randomUUID()}`);
    try {
      await rename(file, aside);
    } catch (err) {
      ignoreMissing(err as NodeJS.ErrnoException);
      return false;
    }
    const s = await stat(aside);
    if (s.mtimeMs >= cutoff) {
      // A put renamed fresh bytes here just before: they stay (the same bytes if another came since).
      await rename(aside, file);
      return false;
    }
    await unlink(aside);
    return true;
  }

  async close(): Promise<void> {}

  /** The directory `key` goes in, created when missing. */
  async directoryOf(key: string): Promise<string> {
    const dir = path.dirname(this.fileOf(key));
    if (!this.made.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.made.add(dir);
    }
    return dir;
  }

  private fileOf(key: string): string {
    if (!/^[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(key)) throw new Error('not a blob file key');
    return path.join(this.dir, key);
  }
}

class FileUpload implements BlobUpload {
  /** Pieces not written yet (not copied: a source's pieces are never reused by it). */
  private pieces: Uint8Array[] = [];
  private gathered = 0;
  private pending: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly backend: FileBlobBackend;
  private readonly file: string;
  private readonly handle: FileHandle;

  constructor(backend: FileBlobBackend, file: string, handle: FileHandle) {
    this.backend = backend;
    this.file = file;
    this.handle = handle;
  }

  async write(piece: Uint8Array): Promise<void> {
    this.pieces.push(piece);
    this.gathered += piece.byteLength;
    if (this.gathered >= WRITE_BUFFER) await this.flush();
  }

  /** Writes what was gathered (one writev) while the next pieces arrive; at most one write in flight. */
  private async flush(): Promise<void> {
    await this.pending;
    const pieces = this.pieces;
    this.pieces = [];
    this.gathered = 0;
    this.pending = writeAll(this.handle, pieces);
  }

  async commit(sha256: string): Promise<string> {
    if (this.gathered > 0) await this.flush();
    await this.pending;
    await this.handle.datasync(); // the bytes and the size; the name is made durable by the directory fsync below
    await this.handle.close();
    this.closed = true;
    const key = fanOutPath(sha256);
    const dir = await this.backend.directoryOf(key);
    await rename(this.file, path.join(this.backend.dir, key));
    await fsyncDir(dir);
    return key;
  }

  async abort(): Promise<void> {
    await this.pending.catch(() => undefined);
    if (!this.closed) await this.handle.close().catch(() => undefined);
    this.closed = true;
    await unlink(this.file).catch(() => undefined);
  }
}

async function writeAll(handle: FileHandle, pieces: Uint8Array[]): Promise<void> {
  let left = pieces;
  while (left.length > 0) {
    let { bytesWritten } = await handle.writev(left);
    // A short write: go on from the first byte not written.
    while (left.length > 0 && bytesWritten >= (left[0] as Uint8Array).byteLength) bytesWritten -= (left.shift() as Uint8Array).byteLength;
    if (bytesWritten > 0) left[0] = (left[0] as Uint8Array).subarray(bytesWritten);
  }
}

/** The rename is durable once the directory holding the new name is. */
async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function hexDirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory() && /^[0-9a-f]{2}$/.test(e.name)).map((e) => e.name);
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
