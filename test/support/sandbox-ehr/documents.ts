/**
 * Synthetic document bytes for the sandbox EHR: minimal but valid PDFs and PNGs, generated at
 * seed time from a seeded PRNG so that the same options give the same bytes (and hashes).
 *
 * PDF: ISO 32000-1 §7.5 (header, objects, xref table with exact byte offsets, trailer).
 * PNG: ISO/IEC 15948 (signature, IHDR, zlib-compressed IDAT with filter bytes, IEND, CRC-32).
 */
import { createHash } from 'node:crypto';
import { crc32, deflateSync } from 'node:zlib';

/** A deterministic PRNG (mulberry32): same seed, same sequence; not for cryptography. */
export function createPrng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `length` pseudo-random bytes from `seed` (fills 4 bytes per PRNG step). */
export function randomBytesFrom(seed: number, length: number): Buffer {
  const next = createPrng(seed);
  const words = new Uint32Array(Math.ceil(length / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  return Buffer.from(words.buffer, 0, length);
}

/** FHIR `Attachment.hash`: base64 of the raw 20-byte SHA-1 digest (R4 datatypes §2.24.0.2). */
export function sha1Base64(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('base64');
}

function pdfEscape(text: string): string {
  return text.replace(/[\\()]/g, (c) => `\\${c}`).replace(/[^\x20-\x7e]/g, '?');
}

export interface PdfOptions {
  title: string;
  lines: string[];
  /** Pad the file to about this many bytes (within a few bytes) with an unreferenced binary stream (for large documents). */
  padToBytes?: number;
  /** Seed of the padding bytes. */
  seed?: number;
  /**
   * Where the padding bytes come from (default: `randomBytesFrom(seed, length)`). The bulk
   * documents pass slices of one shared random pool, so 1 GiB of them costs no PRNG time and
   * no memory of its own (see seed.ts).
   */
  padding?: (length: number) => Buffer;
}

/**
 * A one-page PDF 1.4 showing `title` and `lines` in Helvetica. Written by hand: every object's
 * byte offset goes into the xref table, so PDF readers open it without repair.
 */
export function makePdf(opts: PdfOptions): Buffer {
  return Buffer.concat(makePdfParts(opts));
}

/**
 * {@link makePdf} as parts whose concatenation is the file: when padded, `[head, padding,
 * tail]` with the padding buffer itself (not a copy) in the middle; otherwise one part.
 */
export function makePdfParts(opts: PdfOptions): Buffer[] {
  const text = [`BT /F1 16 Tf 56 780 Td (${pdfEscape(opts.title)}) Tj ET`];
  opts.lines.forEach((line, i) => text.push(`BT /F1 11 Tf 56 ${750 - i * 16} Td (${pdfEscape(line)}) Tj ET`));
  const content = Buffer.from(text.join('\n'), 'latin1');
  // Each object's body as pieces, so that the padding stays one piece of its own.
  const objects: Buffer[][] = [
    [Buffer.from('<< /Type /Catalog /Pages 2 0 R >>')],
    [Buffer.from('<< /Type /Pages /Kids [3 0 R] /Count 1 >>')],
    [Buffer.from('<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>')],
    [Buffer.from(`<< /Length ${content.length} >>\nstream\n`), content, Buffer.from('\nendstream')],
    [Buffer.from('<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>')],
  ];
  const unpadded = opts.padToBytes ? makePdf({ title: opts.title, lines: opts.lines }).length : 0;
  const padObjectOverhead = 80; // "6 0 obj", the stream dictionary and keywords, one xref line
  let pad: Buffer | undefined;
  if (opts.padToBytes && opts.padToBytes > unpadded + padObjectOverhead) {
    const length = opts.padToBytes - unpadded - padObjectOverhead;
    pad = opts.padding ? opts.padding(length) : randomBytesFrom(opts.seed ?? 1, length);
    if (pad.length !== length) throw new Error(`PDF padding source gave ${pad.length} bytes, ${length} wanted`);
    objects.push([Buffer.from(`<< /Length ${pad.length} >>\nstream\n`), pad, Buffer.from('\nendstream')]);
  }
  const pieces: Buffer[] = [Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1')];
  let offset = pieces[0]!.length;
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(offset);
    const obj = [Buffer.from(`${i + 1} 0 obj\n`), ...body, Buffer.from('\nendobj\n')];
    pieces.push(...obj);
    offset += obj.reduce((n, b) => n + b.length, 0);
  });
  const xref = [`xref\n0 ${objects.length + 1}\n`, '0000000000 65535 f \n', ...offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`)];
  pieces.push(Buffer.from(`${xref.join('')}trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${offset}\n%%EOF\n`));
  if (!pad) return [Buffer.concat(pieces)];
  const at = pieces.indexOf(pad);
  return [Buffer.concat(pieces.slice(0, at)), pad, Buffer.concat(pieces.slice(at + 1))];
}

function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

export interface PngOptions {
  width: number;
  height: number;
  seed: number;
  /** `noise` (incompressible, the file is ~3 bytes per pixel) or `gradient` (small file). */
  pattern?: 'noise' | 'gradient';
}

/** An 8-bit RGB PNG; `noise` makes the file about as large as its pixels (for large attachments). */
export function makePng(opts: PngOptions): Buffer {
  const rowBytes = opts.width * 3;
  const raw = opts.pattern === 'gradient' ? Buffer.alloc((rowBytes + 1) * opts.height) : randomBytesFrom(opts.seed, (rowBytes + 1) * opts.height);
  for (let y = 0; y < opts.height; y++) {
    const row = y * (rowBytes + 1);
    raw[row] = 0; // filter type None
    if (opts.pattern === 'gradient') {
      for (let x = 0; x < opts.width; x++) {
        raw[row + 1 + x * 3] = (x * 255) / opts.width;
        raw[row + 2 + x * 3] = (y * 255) / opts.height;
        raw[row + 3 + x * 3] = (opts.seed * 37) & 0xff;
      }
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(opts.width, 0);
  ihdr.writeUInt32BE(opts.height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type RGB, deflate, no filter, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(raw, { level: opts.pattern === 'gradient' ? 6 : 1 })),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A noise PNG of about `bytes` bytes (at least 64×64 pixels), for "large attachment" cases. */
export function makeLargePng(bytes: number, seed: number): Buffer {
  const width = 1024;
  const height = Math.max(64, Math.ceil(bytes / (width * 3 + 1)));
  return makePng({ width, height, seed, pattern: 'noise' });
}
