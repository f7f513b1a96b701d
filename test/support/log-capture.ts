import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log/logger.ts';

/** A service logger whose JSON lines are kept for assertions: `raw` as written, `lines` parsed. */
export function captureLogs<T = Record<string, unknown>>(level: 'debug' | 'info' | 'warn'): { log: Logger; raw: string[]; lines: T[] } {
  const raw: string[] = [];
  const lines: T[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as T);
      }
      done();
    },
  });
  return { log: createLogger({ level, destination: sink }), raw, lines };
}
