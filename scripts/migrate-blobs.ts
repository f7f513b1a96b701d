/**
 * `npm run blobs:migrate`: moves attachment bytes still held in the database (`blob_chunk`,
 * written before the blob store existed) into the configured blob store (BLOB_STORE), one blob
 * at a time, each verified against its SHA-256 before its database chunks are deleted
 * (src/store/migrate-blobs.ts). It reads the configuration the service reads and applies the
 * schema migrations first. Safe to run while the service runs, to stop, and to run again: it
 * continues with the blobs not moved yet.
 *
 * Exit status: 0 when every blob moved (or none was left), 1 otherwise.
 */
import { loadConfigOrExit } from '../src/config/config.ts';
import { openBlobBackend } from '../src/store/blob-backend.ts';
import { openDatabase } from '../src/store/database.ts';
import { migrateBlobsFromDatabase } from '../src/store/migrate-blobs.ts';

const config = loadConfigOrExit(process.env, 1);
const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 2 });
const backend = await openBlobBackend(config.blobStore);
const where = config.blobStore.kind === 'files' ? `files in ${config.blobStore.dir}` : `s3 bucket ${config.blobStore.bucket}`;
let status = 0;
let moved = 0;
try {
  await database.migrate();
  process.stdout.write(`moving attachment bytes from the ${database.kind} database to the ${where}\n`);
  const started = performance.now();
  const result = await migrateBlobsFromDatabase(database.db, backend, ({ size }) => {
    moved++;
    if (moved % 100 === 0) process.stdout.write(`  ${moved} blobs moved (last one ${size} bytes)\n`);
  });
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`${result.moved} blobs moved (${(result.bytes / 1024 / 1024).toFixed(1)} MiB) in ${seconds.toFixed(1)} s; no blob left in the database${result.failed.length ? ' except those below' : ''}\n`);
  for (const f of result.failed) process.stdout.write(`  NOT MOVED ${f.sha256}: ${f.reason}\n`);
  if (result.failed.length > 0) status = 1;
} finally {
  await backend.close();
  await database.close();
}
process.exit(status);
