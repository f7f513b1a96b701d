/**
 * Finds the synthetic chart on a standalone sandbox EHR (`npm run sandbox`), whose ids are its
 * own (server-assigned): the patient by its identifier, then the operative note and first-opinion
 * note by LOINC type, the surgeon as their author, and the valid consent naming Lakeside. Used by
 * scripts that talk to a sandbox in another process (`npm run try`).
 *
 * Authenticates as {@link SANDBOX_EXPLORER_CLIENT_ID}, which `npm run sandbox` registers with the
 * service's EXAMPLE outbound key and `system/*.rs` (the service's own registration cannot search
 * Patients or Consents, as a hospital's would not).
 */
import type { Bundle, Consent, DocumentReference, Patient } from '@medplum/fhirtypes';
import { CLIENT_ASSERTION_TYPE, loadExamplePrivateJwk, signClientAssertion } from '../tokens.ts';
import type { ReferralChart } from '../referrals.ts';
import { SANDBOX_ORGANIZATIONS, SANDBOX_PATIENT_IDENTIFIER } from './seed-resources.ts';

/** The client id scripts use to read a standalone sandbox. */
export const SANDBOX_EXPLORER_CLIENT_ID = 'sandbox-explorer';

/** Looks the chart up on the sandbox at `url` (its origin, e.g. http://localhost:8090). */
export async function findSandboxChart(url: string): Promise<ReferralChart> {
  const base = `${url.replace(/\/+$/, '')}/fhir/R4`;
  const tokenUrl = `${url.replace(/\/+$/, '')}/auth/token`;
  const assertion = await signClientAssertion({ clientId: SANDBOX_EXPLORER_CLIENT_ID, privateJwk: await loadExamplePrivateJwk('service-outbound'), tokenUrl });
  const tokenRes = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion, scope: 'system/*.rs' }),
  });
  if (!tokenRes.ok) throw new Error(`sandbox token: HTTP ${tokenRes.status} ${await tokenRes.text()}`);
  const { access_token: token } = (await tokenRes.json()) as { access_token: string };
  const search = async <T>(query: string): Promise<T[]> => {
    const res = await fetch(`${base}/${query}`, { headers: { authorization: `Bearer ${token}`, accept: 'application/fhir+json' } });
    if (!res.ok) throw new Error(`sandbox ${query.split('?')[0]}: HTTP ${res.status}`);
    return ((await res.json()) as Bundle).entry?.map((e) => e.resource as T) ?? [];
  };
  const [patient] = await search<Patient>(`Patient?identifier=${encodeURIComponent(`${SANDBOX_PATIENT_IDENTIFIER.system}|${SANDBOX_PATIENT_IDENTIFIER.value}`)}`);
  if (!patient?.id) throw new Error('the sandbox has no synthetic patient (is it `npm run sandbox`?)');
  const byType = async (loinc: string): Promise<DocumentReference> => {
    const [doc] = await search<DocumentReference>(`DocumentReference?patient=Patient/${patient.id}&type=${encodeURIComponent(`http://loinc.org|${loinc}`)}`);
    if (!doc?.id) throw new Error(`the sandbox chart has no document of LOINC ${loinc}`);
    return doc;
  };
  const [opNote, firstOpinion] = [await byType('11504-8'), await byType('11488-4')];
  const now = new Date().toISOString();
  const consent = (await search<Consent>(`Consent?patient=Patient/${patient.id}`)).find(
    (c) => (c.provision?.period?.end ?? '') > now && c.provision?.actor?.some((a) => a.reference.display === SANDBOX_ORGANIZATIONS.lakeside.name),
  );
  if (!consent?.id) throw new Error('the sandbox chart has no valid consent naming Lakeside');
  const practitioner = opNote.author?.[0]?.reference?.split('/')[1];
  if (!practitioner) throw new Error('the operative note names no author');
  return {
    patientId: patient.id,
    practitionerId: practitioner,
    firstOpinionNoteId: firstOpinion.id!,
    consentId: consent.id,
    documents: [{ key: 'op-note-2024', id: opNote.id! }, { key: 'first-opinion-note', id: firstOpinion.id! }],
  };
}
