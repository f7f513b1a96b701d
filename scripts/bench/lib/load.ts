/**
 * HTTP load with autocannon: POSTs for a fixed duration over N connections, each request with a
 * body from `nextBody`, raw results kept so rounds can be pooled into one latency histogram.
 */
import autocannon from 'autocannon';

/** What autocannon returns with `skipAggregateResult`: raw counters and encoded histograms. */
export type RawResult = autocannon.Result & { duration: number; totalCompletedRequests: number };

/** autocannon's own merge of raw results (pooled latency histogram); missing from @types/autocannon. */
export const mergeResults = (results: RawResult[]): autocannon.Result =>
  (autocannon as unknown as { aggregateResult(r: RawResult[], o: object): autocannon.Result }).aggregateResult(results, { url: 'http://127.0.0.1' });

export interface LoadOptions {
  /** Full URL of the endpoint. */
  url: string;
  connections: number;
  seconds: number;
  headers: Record<string, string>;
  nextBody: () => string;
}

export function load(o: LoadOptions): Promise<RawResult> {
  const target = new URL(o.url);
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: target.origin,
        connections: o.connections,
        duration: o.seconds,
        skipAggregateResult: true,
        requests: [{ method: 'POST', path: `${target.pathname}${target.search}`, headers: o.headers, setupRequest: (req) => ({ ...req, body: o.nextBody() }) }],
      },
      (err, result) => (err ? reject(err) : resolve(result as RawResult)),
    );
  });
}
