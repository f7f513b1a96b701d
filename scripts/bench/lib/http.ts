/**
 * HTTP for load generators that share an event loop with the service under test, timed on
 * CLOCK_MONOTONIC (the clock of the sandbox child's arrival events too).
 */
import http from 'node:http';

/** CLOCK_MONOTONIC in ms. */
export const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/**
 * HTTP over node:http with one keep-alive agent (no connection cap): cheaper on this event
 * loop than global fetch, which matters because the service under test shares it.
 */
export const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
export interface HttpResult {
  status: number;
  body: string;
  startMs: number;
  endMs: number;
}
export function request(method: string, url: string, headers: Record<string, string>, body?: string): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const startMs = monoMs();
    const payload = body === undefined ? undefined : Buffer.from(body);
    const req = http.request(url, { method, agent, headers: { ...headers, ...(payload ? { 'content-length': String(payload.length) } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), startMs, endMs: monoMs() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

