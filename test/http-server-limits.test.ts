/**
 * Connection limits of the HTTP server, against the real service with short
 * timeouts: idle and slow-loris connections (headers or body trickling in) are closed by the
 * server, keep-alive is bounded in requests and in idle time, connections are capped, and a
 * large Binary download to a slow reader is NOT cut by the request timeout (which covers
 * receiving the request only). Assertions wait for the server to act (a socket's close, the
 * server's 'drop' event), never on how long it took; the test timeouts are generous bounds.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { Bundle, DocumentReference, Task } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReferralSummary } from '../src/intake/get-referral-summary.ts';
import { clientIdOf, writeSandboxNetwork } from './support/example-network.ts';
import { until } from './support/flow.ts';
import { makeSecondOpinionRequest } from './support/referrals.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';
import { seededDocument } from './support/sandbox-ehr/seed.ts';
import { startTestService, type TestService } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const LARGE_BYTES = 24 * 1024 * 1024;

describe('HTTP server limits', () => {
  let ehr: SandboxEhr;
  /** The ids this sandbox gave a seeded document (`op-note-2024`, ...) and its Binary. */
  const docId = (key: string): string => seededDocument(ehr.seeded, key).id;
  const binId = (key: string): string => seededDocument(ehr.seeded, key).binaryId!;
  let service: TestService;
  let port: number;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, seed: { largeBytes: LARGE_BYTES } });
    service = await startTestService(
      {
        NETWORK_FILE: await writeSandboxNetwork(ehr, { timeoutMs: 30_000 }),
        HTTP_HEADERS_TIMEOUT_MS: '1000',
        HTTP_REQUEST_TIMEOUT_MS: '2000',
        HTTP_KEEP_ALIVE_TIMEOUT_MS: '1000',
        HTTP_MAX_REQUESTS_PER_SOCKET: '3',
        HTTP_MAX_CONNECTIONS: '8',
      },
      undefined,
      { jobPollingIntervalSeconds: 0.5 },
    );
    port = Number(new URL(service.url).port);
    for (const p of ['st-olaf', 'lakeside-consults']) tokens[p] = await getAccessToken(service.url, clientIdOf(p));
  });
  afterAll(async () => {
    await service?.stop();
    await ehr?.stop();
  });

  /** A raw connection to the service; `closed` resolves with what the server sent when it closes. */
  function connect(): { socket: net.Socket; closed: Promise<string> } {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => void (received += d.toString('latin1')));
    socket.on('error', () => undefined);
    return { socket, closed: new Promise((resolve) => socket.on('close', () => resolve(received))) };
  }

  /** Writes one byte every 100 ms until the socket closes. */
  function trickle(socket: net.Socket): void {
    const timer = setInterval(() => (socket.destroyed ? clearInterval(timer) : socket.write('a')), 100);
    socket.on('close', () => clearInterval(timer));
  }

  /** Nothing, or Node's 408 before it closes the connection. */
  const cutOff = (received: string) => expect(received === '' || received.startsWith('HTTP/1.1 408'), JSON.stringify(received.slice(0, 80))).toBe(true);

  it('a large Binary download to a slow reader outlives the request timeout: all bytes arrive while a slow-loris request is cut meanwhile', async () => {
    const created = await fetch(`${service.url}/second-opinions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens['st-olaf']}`, 'content-type': 'application/json' },
      body: JSON.stringify(makeSecondOpinionRequest({ consultants: ['lakeside-consults'], blinded: false, firstOpinion: { documents: [] }, records: { documents: [{ reference: `DocumentReference/${docId('op-note-2024')}` }, { reference: `DocumentReference/${docId('imaging-2024')}` }] } }, ehr.seeded)),
    });
    expect(created.status).toBe(201);
    const { id, tasks } = (await created.json()) as { id: string; tasks: Task[] };
    const summary = await until(async () => {
      const s = (await (await fetch(`${service.url}/second-opinions/${id}`, { headers: { authorization: `Bearer ${tokens['st-olaf']}` } })).json()) as ReferralSummary;
      return s.recordSet.status === 'records-pending' ? undefined : s;
    }, 'the record set');
    expect(summary.recordSet.status).toBe('records-ready');
    const auth = { authorization: `Bearer ${tokens['lakeside-consults']}` };
    const task = (await (await fetch(`${service.url}/fhir/Task/${tasks[0]?.id}`, { headers: auth })).json()) as Task;
    const bundle = (await (await fetch(`${service.url}/fhir/${task.input?.[0]?.valueReference?.reference}`, { headers: auth })).json()) as Bundle;
    const attachment = bundle.entry?.map((e) => e.resource as DocumentReference).find((d) => d.meta?.source?.endsWith(`/DocumentReference/${docId('imaging-2024')}`))?.content[0]?.attachment;
    const seeded = seededDocument(ehr.seeded, 'imaging-2024');
    expect(seeded?.size).toBeGreaterThanOrEqual(LARGE_BYTES);
    expect([attachment?.size, attachment?.hash]).toEqual([seeded?.size, seeded?.sha1Base64]);

    // The server's side of the download: has it finished sending?
    let downloadFinished = false;
    const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.url?.startsWith('/fhir/Binary/')) res.on('finish', () => void (downloadFinished = true));
    };
    service.server.on('request', onRequest);
    try {
      const { response, headers } = await new Promise<{ response: http.IncomingMessage; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
        http.get(attachment?.url as string, { headers: auth, agent: false }, (res) => resolve({ response: res, headers: res.headers })).on('error', reject);
      });
      expect(response.statusCode).toBe(200);
      expect(headers).toMatchObject({ 'content-length': String(seeded?.size), 'content-security-policy': "sandbox; default-src 'none'", 'cache-control': 'private, no-cache', 'x-content-type-options': 'nosniff' });
      response.pause();

      // A request whose body trickles in is cut by the request timeout while the download waits.
      const slow = connect();
      slow.socket.write('POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n');
      trickle(slow.socket);
      cutOff(await slow.closed);
      expect(downloadFinished).toBe(false);

      const hash = createHash('sha1');
      let size = 0;
      for await (const chunk of response as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
      }
      expect(size).toBe(seeded?.size);
      expect(hash.digest('base64')).toBe(attachment?.hash);
    } finally {
      service.server.off('request', onRequest);
    }
  }, 120_000);

  it('an idle connection that sends nothing is closed by the headers timeout', async () => {
    cutOff(await connect().closed);
  }, 30_000);

  it('slow-loris: headers trickling in at one byte per interval are cut by the headers timeout', async () => {
    const { socket, closed } = connect();
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    trickle(socket);
    cutOff(await closed);
  }, 30_000);

  it('slow-loris: a body trickling in at one byte per interval is cut by the request timeout', async () => {
    const { socket, closed } = connect();
    socket.write('POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n');
    trickle(socket);
    cutOff(await closed);
  }, 30_000);

  it('keep-alive is bounded: the server announces it, closes the connection after maxRequestsPerSocket, and closes an idle one', async () => {
    // Raw requests one after another on one connection (an http.Agent would second-guess the short keep-alive).
    const { socket, closed } = connect();
    const replies: string[] = [];
    let buffered = '';
    socket.on('data', (d: Buffer) => void (buffered += d.toString('latin1')));
    for (let i = 0; i < 3; i++) {
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      const head = await until(() => {
        const end = buffered.indexOf('\r\n\r\n');
        const length = Number(/\r\nContent-Length: (\d+)/i.exec(buffered)?.[1]);
        if (end < 0 || !(buffered.length >= end + 4 + length)) return undefined;
        const reply = buffered.slice(0, end);
        buffered = buffered.slice(end + 4 + length);
        return reply;
      }, `response ${i + 1}`, 20_000);
      replies.push(head);
    }
    expect(replies.map((r) => [/^HTTP\/1\.1 (\d+)/.exec(r)?.[1], /\r\nConnection: ([^\r]*)/i.exec(r)?.[1], /\r\nKeep-Alive: ([^\r]*)/i.exec(r)?.[1]])).toEqual([
      ['200', 'keep-alive', 'timeout=1, max=3'],
      ['200', 'keep-alive', 'timeout=1, max=3'],
      ['200', 'close', undefined],
    ]);
    await closed;

    // One request, then silence: the server closes the idle connection itself.
    const idle = connect();
    idle.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const received = await idle.closed;
    expect(received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(received).toContain('Keep-Alive: timeout=1');
  }, 30_000);

  it('connections are capped: past maxConnections a new one is dropped at once', async () => {
    const connections = () => new Promise<number>((resolve, reject) => service.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    await until(async () => ((await connections()) === 0 ? true : undefined), 'no connection left open', 20_000);
    const dropped = new Promise<void>((resolve) => service.server.once('drop', () => resolve()));
    const open = Array.from({ length: 8 }, () => connect());
    await until(async () => ((await connections()) === 8 ? true : undefined), 'eight connections', 20_000);
    const ninth = connect();
    await dropped;
    expect(await ninth.closed).toBe('');
    await Promise.all(open.map((c) => c.closed));
  }, 60_000);
});
