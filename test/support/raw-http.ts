/**
 * Requests exactly as written, for tests of bad input: `fetch` normalises URLs and refuses some
 * headers, so what it sends is not always what the test means. `rawRequest` sends the path and
 * body bytes as given over node:http; `rawExchange` writes bytes on a socket and returns
 * everything the server answered until it closed the connection.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { sql } from 'drizzle-orm';
import type { TestService } from './service.ts';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The body parsed as JSON (undefined when empty). */
  body: unknown;
}

/**
 * `localAddress` sends from another loopback address (`127.0.0.2`), so per-address limits see
 * another client; no connection is reused.
 */
export function rawRequest(baseUrl: string, method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer, options: { localAddress?: string } = {}): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const sent = { ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers };
    const req = request({ host: hostname, port, method, path, headers: sent, agent: false, ...(options.localAddress ? { localAddress: options.localAddress } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function rawExchange(baseUrl: string, bytes: string | Buffer): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    socket.on('data', (c: Buffer) => chunks.push(c));
    // A reset after the answer (the server closes while the test still writes) is not a failure: 'close' follows.
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/** A form-encoded POST to `${baseUrl}/auth/token` (see rawRequest). */
export function rawTokenRequest(baseUrl: string, form: Record<string, string>, options: { headers?: Record<string, string>; localAddress?: string } = {}): Promise<RawResponse> {
  const body = new URLSearchParams(form).toString();
  return rawRequest(baseUrl, 'POST', '/auth/token', { 'content-type': 'application/x-www-form-urlencoded', ...options.headers }, body, options);
}

/** Rows in every table a request could write to: compared before and after a refusal. */
export async function rowCounts(service: TestService): Promise<Record<string, number>> {
  const tables = ['resource', 'resource_history', 'intake_request', 'record_set_assembly', 'opinion_delivery', 'client_assertion_jti', 'blob', `${service.jobs.schema}.job`];
  const select = tables.map((t) => `(SELECT count(*) FROM ${t})::int AS "${t}"`).join(', ');
  const result = await service.database.db.execute(sql.raw(`SELECT ${select}`));
  return (result as unknown as { rows: Record<string, number>[] }).rows[0] as Record<string, number>;
}
