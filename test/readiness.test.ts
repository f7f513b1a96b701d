import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket, connect } from 'node:net';
import type { OperationOutcome } from '@medplum/fhirtypes';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log/logger.ts';
import { type RunningService, startService } from '../src/service.ts';
import { type Database, openDatabase } from '../src/store/database.ts';
import { isStoreUnavailable } from '../src/store/unavailable.ts';
import { clientIdOf } from './support/example-network.ts';
import { until } from './support/flow.ts';
import { testConfig } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const DATABASE_URL = process.env.DATABASE_URL;

/**
 * A TCP proxy between the service and PostgreSQL, to cut and restore the database without
 * touching the server itself (other tests use it at the same time). `cut()` stops listening and
 * destroys every connection; `restore()` listens again on the same port.
 */
async function startProxy(target: { host: string; port: number }): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void>; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = async () => {
    if (server) return;
    server = createServer((client) => {
      const upstream = connect(target.port, target.host);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    const listening = server;
    await new Promise<void>((resolve) => listening.listen(port, '127.0.0.1', resolve));
    port = (listening.address() as { port: number }).port;
  };
  const cut = async () => {
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const s of sockets) s.destroy();
    await closed;
    server = undefined;
  };
  await listen();
  return { port, cut, restore: listen, stop: cut };
}

describe('readiness: which dependency is unreachable, and recovery without a restart', () => {
  it('database errors that mean "unreachable" are told apart from refused queries', () => {
    const wrapped = (cause: unknown) => Object.assign(new Error('Failed query: select 1'), { cause });
    expect(isStoreUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isStoreUnavailable(wrapped(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })))).toBe(true);
    expect(isStoreUnavailable(wrapped(new Error('Connection terminated unexpectedly')))).toBe(true);
    expect(isStoreUnavailable(wrapped(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })))).toBe(true);
    expect(isStoreUnavailable(wrapped(Object.assign(new Error('the database system is starting up'), { code: '57P03' })))).toBe(true);
    expect(isStoreUnavailable(wrapped(Object.assign(new Error('connection failure'), { code: '08006' })))).toBe(true);
    expect(isStoreUnavailable(new Error('PGlite is closed'))).toBe(true);
    // A query the database refused is a bug or a conflict, not an outage.
    expect(isStoreUnavailable(wrapped(Object.assign(new Error('syntax error at or near "selec"'), { code: '42601' })))).toBe(false);
    expect(isStoreUnavailable(wrapped(Object.assign(new Error('duplicate key value'), { code: '23505' })))).toBe(false);
    expect(isStoreUnavailable(new Error('something else'))).toBe(false);
  });

  describe.runIf(DATABASE_URL)('PostgreSQL behind a TCP proxy that is cut and restored', () => {
    let proxy: Awaited<ReturnType<typeof startProxy>>;
    let database: Database;
    let service: RunningService;
    let schemaName: string;
    let token: string;

    beforeAll(async () => {
      const url = new URL(DATABASE_URL as string);
      proxy = await startProxy({ host: url.hostname, port: Number(url.port || 5432) });
      const proxied = new URL(url);
      proxied.hostname = '127.0.0.1';
      proxied.port = String(proxy.port);
      schemaName = `t_${randomBytes(6).toString('hex')}`;
      database = await openDatabase({ databaseUrl: proxied.toString(), schemaName, poolSize: 4 });
      await database.migrate();
      const config = await testConfig({ DATABASE_URL: proxied.toString() });
      service = await startService(config, createLogger({ level: 'silent' }), { database });
      token = await getAccessToken(service.url, clientIdOf('lakeside-consults'));
    }, 120_000);
    afterAll(async () => {
      await proxy?.restore().catch(() => undefined);
      await service?.stop().catch(() => undefined);
      await database?.close().catch(() => undefined);
      const admin = new pg.Client({ connectionString: DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS ${schemaName} CASCADE`);
      await admin.query(`DROP SCHEMA IF EXISTS ${schemaName}_pgboss CASCADE`);
      await admin.end();
      await proxy?.stop();
    });

    const worklist = () => fetch(`${service.url}/consults`, { headers: { authorization: `Bearer ${token}` } });

    it('ready, then 503 naming the database and the job queue while the proxy is cut (requests get 503 + Retry-After), then ready and serving again', async () => {
      const before = await fetch(`${service.url}/readyz`);
      expect(before.status).toBe(200);
      expect(await before.json()).toEqual({ status: 'ready' });
      expect((await worklist()).status).toBe(200);

      await proxy.cut();
      const down = await fetch(`${service.url}/readyz`);
      expect(down.status).toBe(503);
      const body = (await down.json()) as { status: string; unavailable: string[] };
      expect(body).toEqual({ status: 'unavailable', unavailable: ['database', 'job-queue'] });
      // No internals: no address, port or driver text.
      expect(JSON.stringify(body)).not.toMatch(/127\.0\.0\.1|ECONN|5432|terminated/);
      expect(down.headers.get('retry-after')).toBe('5');
      // /healthz is the process, not its dependencies: still alive.
      expect((await fetch(`${service.url}/healthz`)).status).toBe(200);

      // A request that needs the database: 503 with an OperationOutcome and Retry-After, not a 500.
      const refused = await worklist();
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('5');
      const outcome = (await refused.json()) as OperationOutcome;
      expect(outcome.resourceType).toBe('OperationOutcome');
      expect(outcome.issue[0]?.code).toBe('transient');
      expect(outcome.issue[0]?.details?.text).toMatch(/cannot reach its database/);
      expect(JSON.stringify(outcome)).not.toMatch(/127\.0\.0\.1|ECONN|5432/);

      await proxy.restore();
      // Recovers by itself: the pools open new connections on the next use.
      const ready = await until(async () => {
        const res = await fetch(`${service.url}/readyz`);
        return res.status === 200 ? ((await res.json()) as unknown) : undefined;
      }, 'readiness to come back');
      expect(ready).toEqual({ status: 'ready' });
      const after = await worklist();
      expect(after.status).toBe(200);
      expect(((await after.json()) as { items: unknown[] }).items).toEqual([]);
    }, 120_000);
  });

  describe.skipIf(DATABASE_URL)('the embedded store (PGlite) closed under the service', () => {
    let database: Database;
    let service: RunningService;

    beforeAll(async () => {
      database = await openDatabase({ dataDir: 'memory://' });
      await database.migrate();
      service = await startService(await testConfig(), createLogger({ level: 'silent' }), { database });
    }, 120_000);
    afterAll(async () => {
      await service?.stop().catch(() => undefined);
    });

    it('503 naming the database and the job queue, and requests get 503 + Retry-After; only a restart reopens it', async () => {
      const token = await getAccessToken(service.url, clientIdOf('lakeside-consults'));
      expect((await fetch(`${service.url}/readyz`)).status).toBe(200);
      if (database.raw.kind !== 'pglite') throw new Error('expected PGlite');
      // The queue shares the one session: closing it takes both away.
      await database.raw.client.close();

      const down = await fetch(`${service.url}/readyz`);
      expect(down.status).toBe(503);
      expect(await down.json()).toEqual({ status: 'unavailable', unavailable: ['database', 'job-queue'] });
      const refused = await fetch(`${service.url}/consults`, { headers: { authorization: `Bearer ${token}` } });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('5');
      expect(((await refused.json()) as OperationOutcome).issue[0]?.code).toBe('transient');
    }, 60_000);
  });
});
