/**
 * The driver's HTTP: node:http with one keep-alive Agent per service process. When a replica's
 * process is replaced (killed and started again on the same port), its Agent is destroyed with
 * it, as a load balancer drops its connections to an upstream that went away: no request is
 * ever sent on a connection to a process that is gone. Each answer or error says whether it
 * came on a reused connection (`req.reusedSocket`), so a connection closed under a request can
 * be told from a fresh one refused.
 */
import http from 'node:http';

export interface HttpAnswer {
  status: number;
  headers: Headers;
  raw: Buffer;
  reused: boolean;
}

/** An error on the way, with whether the request went out on a reused connection. */
export class HttpCallError extends Error {
  readonly reused: boolean;
  constructor(message: string, reused: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.reused = reused;
  }
}

export class AgentPerProcess<P extends object> {
  private readonly agents = new WeakMap<P, http.Agent>();
  private readonly current = new Map<number, { process: P; agent: http.Agent }>();

  /** The Agent for `process` in slot `slot`; a slot's earlier process's Agent is destroyed. */
  agentFor(slot: number, process: P): http.Agent {
    const held = this.current.get(slot);
    if (held && held.process === process) return held.agent;
    held?.agent.destroy();
    const agent = this.agents.get(process) ?? new http.Agent({ keepAlive: true, maxSockets: 64 });
    this.agents.set(process, agent);
    this.current.set(slot, { process, agent });
    return agent;
  }

  destroy(): void {
    for (const { agent } of this.current.values()) agent.destroy();
    this.current.clear();
  }
}

export function request(url: string, options: { agent: http.Agent; method: string; headers: Record<string, string>; body?: string; timeoutMs: number }): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { agent: options.agent, method: options.method, headers: { ...options.headers, ...(options.body !== undefined ? { 'content-length': String(Buffer.byteLength(options.body)) } : {}) } });
    const fail = (err: Error) => reject(new HttpCallError(err.message, req.reusedSocket, { cause: err }));
    req.setTimeout(options.timeoutMs, () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    req.on('error', fail);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', fail);
      res.on('aborted', () => fail(new Error('answer cut short')));
      res.on('end', () => {
        if (!res.complete) return fail(new Error('answer cut short'));
        const headers = new Headers();
        for (const [name, value] of Object.entries(res.headers)) {
          if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
        }
        resolve({ status: res.statusCode ?? 0, headers, raw: Buffer.concat(chunks), reused: req.reusedSocket });
      });
    });
    req.end(options.body);
  });
}
