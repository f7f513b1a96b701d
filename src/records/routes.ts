import { Router, type Request, type Response } from 'express';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { auditedRead, requestedEntity } from '../audit/audited-read.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { Guard } from '../access/route-guard.ts';
import { requireCaller } from '../auth/middleware.ts';
import { FHIR_JSON } from '../fhir/constants.ts';
import { HttpOutcomeError, issue, outcome } from '../fhir/outcomes.ts';
import { findReadableAttachment, openAttachment, parseRange, type ReadAttachmentDeps } from './read-attachment.ts';

export interface BinaryRouterDeps extends ReadAttachmentDeps {
  guard: Guard;
  audit: AuditLog;
}

/**
 * `GET /fhir/Binary/{id}`: the attachment bytes with Content-Type,
 * Content-Length, a strong ETag from the SHA-256, and single byte ranges. A client that asks
 * for `application/fhir+json` (and not for the raw type) gets a Binary resource instead.
 * Mounted before the generic FHIR router; every read, refused ones too, is audited.
 */
export function createBinaryRouter(deps: BinaryRouterDeps): Router {
  const router = Router();

  router.get('/fhir/Binary/:id', deps.guard('GET', '/fhir/Binary/:id'), async (req, res) => {
    const caller = requireCaller();
    const id = req.params.id as string;
    const access = await auditedRead(
      deps.audit,
      caller,
      {
        action: 'read',
        requested: requestedEntity('Binary', id),
        touched: (a) => ({ entities: [{ reference: `Binary/${id}` }], ...(a.patientReference ? { patientReference: a.patientReference } : {}) }),
      },
      async () => findReadableAttachment(id, caller, deps),
    );
    const { info } = access;
    const etag = `"${info.sha256}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'private, no-cache');
    // The bytes come from another organization's EHR: never let a browser run them as our origin.
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Content-Security-Policy', "sandbox; default-src 'none'");
    if (matchesEtag(req.header('If-None-Match'), etag)) {
      res.status(304).end();
      return;
    }

    if (wantsFhirResource(req)) {
      res.type(FHIR_JSON);
      if (req.method === 'HEAD') return void res.end();
      const head = `{"resourceType":"Binary","id":"${info.sha256}","contentType":${JSON.stringify(info.contentType)},"data":"`;
      await send(res, await openAttachment(info, undefined, deps), { head, tail: '"}', transform: base64Encoder() });
      return;
    }

    res.setHeader('Accept-Ranges', 'bytes');
    res.type(info.contentType);
    const ifRange = req.header('If-Range');
    const range = ifRange !== undefined && ifRange !== etag ? { kind: 'whole' as const } : parseRange(req.header('Range'), info.size);
    if (range.kind === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${info.size}`);
      throw new HttpOutcomeError(416, outcome([issue('value', `The requested range is not within the ${info.size} bytes of this Binary`, 'Range')]));
    }
    if (range.kind === 'range') {
      res.status(206);
      res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${info.size}`);
      res.setHeader('Content-Length', String(range.end - range.start + 1));
    } else {
      res.setHeader('Content-Length', String(info.size));
    }
    if (req.method === 'HEAD') return void res.end();
    await send(res, await openAttachment(info, range.kind === 'range' ? { start: range.start, end: range.end } : undefined, deps));
  });

  return router;
}

function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

/** True when the client asked for the FHIR resource (`application/fhir+json`, `_format=json`) rather than the bytes. */
function wantsFhirResource(req: Request): boolean {
  const format = typeof req.query._format === 'string' ? req.query._format : undefined;
  if (format) return /json/.test(format);
  const accept = req.header('Accept') ?? '';
  return /application\/(fhir\+)?json/.test(accept) && !/\*\/\*/.test(accept);
}

/** Streams `body` to the response; an error after the headers went out aborts the connection (a short body must never look complete). */
async function send(res: Response, body: Readable, wrap?: { head: string; tail: string; transform: Transform }): Promise<void> {
  try {
    if (wrap) {
      res.write(wrap.head);
      await pipeline(body, wrap.transform, async function* (source) {
        for await (const chunk of source) yield chunk;
        yield wrap.tail;
      }, res);
    } else {
      await pipeline(body, res);
    }
  } catch (err) {
    res.destroy(err as Error);
  }
}

/** Base64 over a byte stream, carrying the last 0-2 bytes of each chunk to the next. */
function base64Encoder(): Transform {
  let carry = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const all = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
      const whole = all.length - (all.length % 3);
      carry = Buffer.from(all.subarray(whole));
      callback(null, whole > 0 ? all.subarray(0, whole).toString('base64') : undefined);
    },
    flush(callback) {
      callback(null, carry.length > 0 ? carry.toString('base64') : undefined);
    },
  });
}
