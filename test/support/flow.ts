/** Helpers of the HTTP flow tests: calling the service as a participant, waiting for background work. */

export interface CallResult<T> {
  status: number;
  body: T;
  headers: Headers;
}

/**
 * `call(method, path, who, body?, headers?)` against the service at `baseUrl`, with `who`'s
 * bearer token (`tokens[who]`, or `who` itself when it is a token). JSON in, JSON out (other answers as text).
 */
export function callerFor(baseUrl: () => string, tokens: Record<string, string>) {
  return async function call<T>(method: string, pathname: string, who: string, body?: unknown, headers: Record<string, string> = {}): Promise<CallResult<T>> {
    const res = await fetch(`${baseUrl()}${pathname}`, {
      method,
      headers: { authorization: `Bearer ${tokens[who] ?? who}`, accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    // JSON answers parsed; a page or a script (the API reference at /docs) as its text.
    const json = /json/.test(res.headers.get('content-type') ?? '');
    return { status: res.status, body: (text ? (json ? JSON.parse(text) : text) : undefined) as T, headers: res.headers };
  };
}

/** Polls `probe` until it returns something other than undefined; fails naming `what` (and `detail()`) after `timeoutMs`. */
export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 45_000, detail?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${detail ? `; ${detail()}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
