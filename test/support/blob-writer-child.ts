/**
 * A process that stores blobs and is killed mid-write (src/store/blob-store.test.ts): it opens
 * the database and blob store named by its JSON argument, stores one small blob, then streams an
 * endless one, printing `WRITING <bytes>` as the bytes go out, until it is killed.
 */
import { Readable } from 'node:stream';
import { openBlobBackend, type BlobStoreSettings } from '../../src/store/blob-backend.ts';
import { BlobStore } from '../../src/store/blob-store.ts';
import { openDatabase } from '../../src/store/database.ts';

const args = JSON.parse(process.argv[2] as string) as { databaseUrl?: string; schemaName?: string; dataDir?: string; settings: BlobStoreSettings };
const database = await openDatabase({
  ...(args.databaseUrl ? { databaseUrl: args.databaseUrl } : {}),
  ...(args.schemaName ? { schemaName: args.schemaName } : {}),
  ...(args.dataDir ? { dataDir: args.dataDir } : {}),
});
const store = new BlobStore(database.db, await openBlobBackend(args.settings));
const small = await store.put(Readable.from([Buffer.from('stored before the kill')]), { contentType: 'text/plain' });
process.stdout.write(`STORED ${small.sha256}\n`);

const piece = Buffer.alloc(256 * 1024, 7);
let sent = 0;
await store.put(
  (async function* () {
    for (;;) {
      yield piece;
      sent += piece.length;
      if (sent % (4 * piece.length) === 0) process.stdout.write(`WRITING ${sent}\n`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })(),
  { contentType: 'application/octet-stream' },
);
