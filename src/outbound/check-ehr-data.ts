/**
 * Lines 5 to 8 of the connection check (check-ehr.ts): a patient's documents, one attachment,
 * a Consent, and (only when asked) a harmless write. Each read of patient data is audited
 * (success or not) before its line is returned; lines show counts, sizes and references only.
 */
import { createHash } from 'node:crypto';
import type { Attachment, Bundle, Communication, Consent, DocumentReference } from '@medplum/fhirtypes';
import type { AuditAction, AuditOutcome } from '../audit/audit-event.ts';
import { actedBy, type AuditLog } from '../audit/audit-log.ts';
import { CANONICAL_BASE } from '../fhir/constants.ts';
import type { Participant } from '../network/network.ts';
import type { CheckCaller, CheckLine } from './check-ehr-lines.ts';
import { describeFailure, printable, statusOf } from './check-ehr-failure.ts';
import type { FhirClient } from './fhir-client.ts';
import { AttachmentTooLargeError } from './outbound-errors.ts';

export interface DataCheckContext {
  client: FhirClient;
  caller: CheckCaller;
  participant: Participant;
  audit: Pick<AuditLog, 'record'>;
  door: string;
  maxAttachmentBytes: number;
  /** Why the EHR cannot be asked for data at all (unreachable, no token), if so. */
  unusable?: string;
}

/** The identifier of the one Communication the `--write` line creates per EHR (conditional create). */
export const CONNECTION_CHECK_IDENTIFIER = { system: `${CANONICAL_BASE}/NamingSystem/connection-check`, value: 'connection-check' } as const;
export const CONNECTION_CHECK_TEXT = 'Connection check from the second-opinion service';

const PATIENT_HINT = 'give a patient (Patient/<id> on the EHR): --patient with npm run check-ehr, ?patient= on the admin route';

/** Line 5: `DocumentReference?patient=` (count only); its documents feed line 6. */
export async function checkDocumentSearch(ctx: DataCheckContext, patient: string | undefined): Promise<{ line: CheckLine; documents: DocumentReference[] }> {
  const title = "Search a patient's DocumentReferences";
  if (ctx.unusable) return { line: { id: 'document-search', title, status: 'skipped', observed: `not tried: ${ctx.unusable}` }, documents: [] };
  if (!patient) return { line: { id: 'document-search', title, status: 'skipped', observed: `not tried: ${PATIENT_HINT}` }, documents: [] };
  const query = `patient=${patient}`;
  const audit = auditing(ctx, 'search', patient, query);
  let bundle: Bundle<DocumentReference>;
  try {
    bundle = await ctx.client.readReference<Bundle<DocumentReference>>(`DocumentReference?${query}&_count=20`);
  } catch (err) {
    await audit.failed(err, []);
    return { line: { id: 'document-search', title, status: 'failed', observed: `GET [base]/DocumentReference?patient=${patient}: ${describeFailure(err)}`, fix: refusalAdvice(err, ctx, 'system/DocumentReference.rs', 'search DocumentReferences') }, documents: [] };
  }
  const documents = (bundle.entry ?? []).filter((e) => e.resource?.resourceType === 'DocumentReference' && e.search?.mode !== 'include' && e.search?.mode !== 'outcome').map((e) => e.resource as DocumentReference);
  await audit.succeeded(documents.filter((d) => d.id).map((d) => `DocumentReference/${d.id}`));
  const more = bundle.link?.some((l) => l.relation === 'next');
  const count = typeof bundle.total === 'number' ? String(bundle.total) : `${documents.length}${more ? '+' : ''}`;
  if (documents.length === 0) {
    return { line: { id: 'document-search', title, status: 'warning', observed: `0 DocumentReferences for ${patient}`, fix: 'Nothing to assemble for this patient: run the check with a patient who has documents, so that line 6 can fetch one.' }, documents };
  }
  return { line: { id: 'document-search', title, status: 'ok', observed: `${count} DocumentReference${count === '1' ? '' : 's'} for ${patient}` }, documents };
}

/** Line 6: the first attachment found, through fetchAttachment (no bearer to another origin); size and SHA-1 against what is declared. */
export async function checkAttachment(ctx: DataCheckContext, documents: readonly DocumentReference[]): Promise<CheckLine> {
  const title = 'Fetch an attachment (Binary or attachment URL)';
  if (ctx.unusable) return { id: 'attachment', title, status: 'skipped', observed: `not tried: ${ctx.unusable}` };
  const found = firstAttachment(documents);
  if (!found) return { id: 'attachment', title, status: 'skipped', observed: documents.length ? 'none of the documents found has an attachment' : 'no document to take one from (line 5)' };
  const { doc, attachment } = found;
  const docRef = `DocumentReference/${doc.id ?? ''}`;
  const audit = auditing(ctx, 'read', patientOf(doc), undefined);
  let bytes: { size: number; sha1: string; where: string };
  try {
    if (attachment.url) {
      const base = new URL(`${ctx.client.baseUrl}/`);
      const response = await ctx.client.fetchAttachment(attachment.url, { maxBytes: ctx.maxAttachmentBytes });
      const hash = createHash('sha1');
      let size = 0;
      for await (const chunk of response.body) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      const origin = new URL(response.url).origin;
      bytes = { size, sha1: hash.digest('base64'), where: origin === base.origin ? "from the EHR's origin (bearer sent)" : `from ${origin} (another origin: no bearer sent)` };
    } else {
      const data = Buffer.from(attachment.data ?? '', 'base64');
      bytes = { size: data.length, sha1: createHash('sha1').update(data).digest('base64'), where: 'inline (attachment.data)' };
    }
  } catch (err) {
    await audit.failed(err, [docRef]);
    if (err instanceof AttachmentTooLargeError) {
      return { id: 'attachment', title, status: 'warning', observed: `${docRef}: ${describeFailure(err)}`, fix: 'Record assembly leaves out attachments larger than MAX_ATTACHMENT_BYTES; raise it if such documents matter.' };
    }
    return { id: 'attachment', title, status: 'failed', observed: `attachment of ${docRef}: ${describeFailure(err)}`, fix: refusalAdvice(err, ctx, 'system/Binary.r', 'read attachments') };
  }
  await audit.succeeded([docRef]);
  const declaredSize = attachment.size !== undefined ? ` (declared ${attachment.size})` : '';
  const observed = `attachment of ${docRef} ${bytes.where}: ${bytes.size} bytes${declaredSize}`;
  if (attachment.hash && attachment.hash !== bytes.sha1) {
    return { id: 'attachment', title, status: 'failed', observed: `${observed}; the SHA-1 does not match the declared hash`, fix: "Record assembly refuses such documents: attachment.hash must be the base64 SHA-1 of the bytes served; ask the EHR's administrators why they differ." };
  }
  if (attachment.size !== undefined && attachment.size !== bytes.size) {
    return { id: 'attachment', title, status: 'failed', observed: `${observed}; the size does not match`, fix: "Record assembly refuses such documents: attachment.size must be the number of bytes served; ask the EHR's administrators why they differ." };
  }
  return { id: 'attachment', title, status: 'ok', observed: `${observed}; ${attachment.hash ? 'SHA-1 matches the declared hash' : 'no hash declared (the service computes its own)'}` };
}

/** Line 7: read the Consent given, else count the patient's Consents. */
export async function checkConsent(ctx: DataCheckContext, patient: string | undefined, consent: string | undefined): Promise<CheckLine> {
  const title = 'Read a Consent';
  if (ctx.unusable) return { id: 'consent', title, status: 'skipped', observed: `not tried: ${ctx.unusable}` };
  if (consent) {
    const audit = auditing(ctx, 'read', patient, undefined);
    let read: Consent;
    try {
      read = await ctx.client.read<Consent>('Consent', consent.slice('Consent/'.length));
    } catch (err) {
      await audit.failed(err, [consent]);
      const fix = statusOf(err) === 404 ? `${consent} does not exist on the EHR (or this client may not see it): check the id.` : refusalAdvice(err, ctx, 'system/Consent.r', 'read Consents');
      return { id: 'consent', title, status: 'failed', observed: `GET [base]/${consent}: ${describeFailure(err)}`, fix };
    }
    await audit.succeeded([consent], read.patient?.reference);
    return { id: 'consent', title, status: 'ok', observed: `${consent} read: status ${printable(read.status ?? 'none', 40)}, ${read.provision?.provision?.length ?? 0} nested provisions` };
  }
  if (!patient) return { id: 'consent', title, status: 'skipped', observed: 'not tried: give a Consent (Consent/<id> on the EHR: --consent, ?consent=) to read, or a patient to count their Consents' };
  const query = `patient=${patient}`;
  const audit = auditing(ctx, 'search', patient, query);
  let bundle: Bundle<Consent>;
  try {
    bundle = await ctx.client.readReference<Bundle<Consent>>(`Consent?${query}&_summary=count`);
  } catch (err) {
    await audit.failed(err, []);
    // The service reads Consents by id only: a search it does not need may be refused.
    const refused = statusOf(err) === 403;
    return {
      id: 'consent',
      title,
      status: refused ? 'warning' : 'failed',
      observed: `GET [base]/Consent?patient=${patient}: ${describeFailure(err)}`,
      fix: refused ? 'The service reads a referral\'s Consent by id (system/Consent.r) and never searches them: give one with --consent (?consent=) to check the read.' : refusalAdvice(err, ctx, 'system/Consent.r', 'read Consents'),
    };
  }
  await audit.succeeded([]);
  const count = typeof bundle.total === 'number' ? bundle.total : (bundle.entry?.length ?? 0);
  return { id: 'consent', title, status: 'ok', observed: `${count} Consent${count === 1 ? '' : 's'} for ${patient} (give one with --consent, ?consent=, to read it)` };
}

/** Line 8 (only when asked): one Communication by conditional create, then the same create again, which must find it. */
export async function checkWrite(ctx: DataCheckContext, write: boolean): Promise<CheckLine> {
  const title = 'Write: conditional create of a Communication, found again by its identifier';
  if (!write) return { id: 'write', title, status: 'skipped', observed: 'not tried: add --write (?write=true on the admin route) to create one Communication on the EHR, once however often it runs' };
  if (ctx.unusable) return { id: 'write', title, status: 'skipped', observed: `not tried: ${ctx.unusable}` };
  const { system, value } = CONNECTION_CHECK_IDENTIFIER;
  const communication: Communication = {
    resourceType: 'Communication',
    identifier: [{ system, value }],
    status: 'completed',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/communication-category', code: 'notification', display: 'Notification' }] }],
    payload: [{ contentString: CONNECTION_CHECK_TEXT }],
  };
  let created: Communication;
  try {
    created = await ctx.client.createIfNoneExist(communication, `identifier=${system}|${value}`);
  } catch (err) {
    return { id: 'write', title, status: 'failed', observed: `POST [base]/Communication (If-None-Exist): ${describeFailure(err)}`, fix: refusalAdvice(err, ctx, 'system/Communication.c', 'create Communications') };
  }
  if (created.id !== undefined) created.id = printable(created.id, 64);
  if (!created.id) return { id: 'write', title, status: 'failed', observed: 'the EHR answered the create without an id', fix: "The service needs the created resource's id back (Prefer: return=representation or a Location header); ask the EHR's administrators." };
  // Read back by its identifier: the same conditional create again must find it, not make a second
  // one (the service's post-back is exactly-once only where the EHR honours If-None-Exist). A read
  // by id would need system/Communication.r, which the service needs nowhere else.
  let again: Communication;
  try {
    again = await ctx.client.createIfNoneExist(communication, `identifier=${system}|${value}`);
  } catch (err) {
    return { id: 'write', title, status: 'failed', observed: `Communication/${created.id} created; the same conditional create again: ${describeFailure(err)}`, fix: refusalAdvice(err, ctx, 'system/Communication.cs', 'create Communications conditionally') };
  }
  if (again.id !== created.id) {
    return { id: 'write', title, status: 'failed', observed: `Communication/${created.id} created, and the same conditional create again made another (${printable(again.id ?? 'no id', 64)})`, fix: 'The EHR ignores If-None-Exist (or drops our identifier): the consult note and its Communication would be posted again on every retry; ask its administrators to support conditional create.' };
  }
  return { id: 'write', title, status: 'ok', observed: `Communication/${created.id} (identifier ${system}|${value}); the same conditional create again found it, so there is one per EHR however often the check runs` };
}

/** What to change when the EHR refused a call: the scope on a 401/403, else the base URL or the EHR. */
function refusalAdvice(err: unknown, ctx: DataCheckContext, scope: string, what: string): string {
  const client = ctx.participant.fhir?.clientId;
  const status = statusOf(err);
  if (status === 403) return `The EHR refused to let client ${client ?? '(no client id)'} ${what}: ask its administrators to grant ${scope} (see line 4), and include it in fhir.scope if the network file sets one.`;
  if (status === 401) return ctx.participant.fhir?.tokenUrl ? 'The FHIR server refused our token although the token endpoint issued it: ask the EHR\'s administrators whether this client is enabled for its FHIR API.' : 'The EHR needs a token: add fhir.tokenUrl, fhir.clientId and fhir.privateKeyFile to the network file.';
  if (status === 0) return 'Check that this host can reach the EHR (and, for attachments, its storage origin) within fhir.timeoutMs.';
  return `The EHR could not ${what} as asked (HTTP ${status}); its answer above says why.`;
}

function firstAttachment(documents: readonly DocumentReference[]): { doc: DocumentReference; attachment: Attachment } | undefined {
  for (const doc of documents) {
    const attachment = doc.content?.map((c) => c.attachment).find((a) => a.url || a.data);
    if (attachment) return { doc, attachment };
  }
  return undefined;
}

function patientOf(doc: DocumentReference): string | undefined {
  const ref = doc.subject?.reference;
  return ref && /(^|\/)Patient\/[A-Za-z0-9\-.]{1,64}$/.test(ref) ? ref : undefined;
}

/** Records the AuditEvent of one read of patient data made by the check. */
function auditing(ctx: DataCheckContext, action: AuditAction, patient: string | undefined, query: string | undefined) {
  const base = ctx.client.baseUrl;
  const absolute = (ref: string) => (/^https?:\/\//.test(ref) ? ref : `${base}/${ref}`);
  const record = (outcome: AuditOutcome, references: readonly string[], description: string, patientRef = patient) =>
    ctx.audit.record({
      action,
      outcome,
      ...actedBy(ctx.caller),
      entities: references.map((reference) => ({ reference: absolute(reference) })),
      ...(patientRef ? { patientReference: absolute(patientRef) } : {}),
      description,
      ...(query !== undefined ? { query } : {}),
    });
  const what = `Connection check of ${ctx.participant.id}'s EHR (${ctx.door})`;
  return {
    succeeded: (references: readonly string[], patientRef?: string) => record('success', references, what, patientRef ?? patient),
    failed: (err: unknown, references: readonly string[]) => {
      const status = statusOf(err);
      return record(status >= 400 && status < 500 ? 'refused' : 'failure', references, `${what}: ${status ? `the EHR answered ${status}` : 'no answer from the EHR'}`);
    },
  };
}
