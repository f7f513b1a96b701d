/** Test bytes for the blob store tests: deterministic, in uneven pieces, and a source that fails. */
export const KiB = 1024;
export const MiB = 1024 * KiB;

/**
 * Deterministic pseudo-random bytes (xorshift32 from `seed`), yielded in pieces of uneven
 * sizes so chunk boundaries never line up with the source's.
 */
export async function* generate(size: number, seed: number, pieceSize = 100_003): AsyncGenerator<Buffer> {
  let x = seed >>> 0 || 1;
  for (let done = 0; done < size; ) {
    const n = Math.min(pieceSize, size - done);
    const piece = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      piece[i] = x & 0xff;
    }
    done += n;
    yield piece;
  }
}

export async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

export async function bytes(size: number, seed: number): Promise<Buffer> {
  return collect(generate(size, seed));
}

export function failingAfter(bytesBefore: number): AsyncIterable<Uint8Array> {
  return (async function* () {
    yield* generate(bytesBefore, 99);
    throw new Error('connection reset by EHR');
  })();
}

