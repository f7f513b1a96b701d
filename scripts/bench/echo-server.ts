/**
 * Baseline for `npm run bench:intake`: a bare Express 5 JSON echo (express.json() then
 * res.json(req.body)), in its own process like the service. Same app settings as
 * src/app.ts (no x-powered-by, no ETag) so the comparison is Express-for-Express.
 * Listens on 127.0.0.1:PORT (0 = any free port) and announces itself on stdout.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import { announceReady, serveParent } from './child-protocol.ts';

const app = express();
app.disable('x-powered-by');
app.set('etag', false);
app.use(express.json({ limit: Number(process.env.BODY_LIMIT_BYTES ?? 1_048_576) }));
app.post('/echo', (req, res) => {
  res.json(req.body);
});

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
await new Promise<void>((resolve, reject) => {
  server.once('listening', resolve);
  server.once('error', reject);
});
const { port } = server.address() as AddressInfo;
serveParent({
  stop: () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
});
announceReady({ url: `http://127.0.0.1:${port}`, path: '/echo' });
