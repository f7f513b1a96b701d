import http from 'node:http';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** JSON.parse(body), or undefined when the body is not JSON. */
  json: unknown;
}

/**
 * One HTTP request with node:http, for what fetch cannot do: send from another loopback
 * address (`localAddress: '127.0.0.2'`, so per-address limits see another client) and send
 * any headers, X-Forwarded-For included.
 */
export function rawRequest(url: string, options: { method?: string; headers?: Record<string, string>; body?: string; localAddress?: string } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers ?? {}, ...(options.localAddress ? { localAddress: options.localAddress } : {}), agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** A form-encoded POST to `${baseUrl}/auth/token` with node:http (see rawRequest). */
export function rawTokenRequest(baseUrl: string, form: Record<string, string>, options: { headers?: Record<string, string>; localAddress?: string } = {}): Promise<RawResponse> {
  return rawRequest(`${baseUrl}/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...options.headers },
    body: new URLSearchParams(form).toString(),
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  });
}
