import { createHash } from 'node:crypto';
import path from 'node:path';
import type { DocumentReference, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseNetwork } from '../src/network/network.ts';
import { createParticipantFhirClients } from '../src/outbound/endpoints.ts';
import type { FhirClient } from '../src/outbound/fhir-client.ts';
import { OutboundHttpError } from '../src/outbound/outbound-errors.ts';
import { SERVICE_OUTBOUND_CLIENT_ID, SERVICE_OUTBOUND_KEY_FILE } from './support/sandbox-ehr/clients.ts';
import { type SandboxEhr, startSandboxEhr } from './support/sandbox-ehr/server.ts';

/**
 * The outbound client against the sandbox EHR over real HTTP: SMART Backend Services token
 * from the sandbox's token endpoint, search with paging, attachments streamed and verified,
 * the bearer sent to the EHR and never to the storage origin.
 */
describe('outbound FHIR client against the sandbox EHR', () => {
  let ehr: SandboxEhr;
  let client: FhirClient;

  beforeAll(async () => {
    ehr = await startSandboxEhr({ port: 0, storagePort: 0, defaultPageSize: 4, seed: { largeBytes: 2_000_000 } });
    const network = parseNetwork(
      {
        participants: [
          {
            id: 'st-olaf',
            name: 'St Olaf',
            roles: ['referrer'],
            organization: { reference: 'Organization/st-olaf' },
            clients: [],
            fhir: { baseUrl: ehr.baseUrl, tokenUrl: ehr.tokenUrl, clientId: SERVICE_OUTBOUND_CLIENT_ID, privateKeyFile: SERVICE_OUTBOUND_KEY_FILE, timeoutMs: 5_000 },
          },
        ],
      },
      'inline',
    );
    const clients = await createParticipantFhirClients(network, { keyBaseDir: path.join(import.meta.dirname, '..') });
    client = clients.get('st-olaf') as FhirClient;
  });
  afterAll(async () => ehr?.stop());

  it('reads and searches with one token, following next links', async () => {
    const [patient, docs] = await Promise.all([client.read<Patient>('Patient', ehr.seeded.patientId), client.search<DocumentReference>('DocumentReference', { patient: `Patient/${ehr.seeded.patientId}` })]);
    expect(patient.name?.[0]?.family).toBeDefined();
    expect(docs.map((d) => d.id).sort()).toEqual(ehr.seeded.documents.map((d) => d.id).sort());
    expect(ehr.requests.filter((r) => r.path.startsWith('/fhir/R4/DocumentReference')).length).toBeGreaterThan(1); // paged at 4
    expect(ehr.tokens.issued.size).toBe(1);
    expect([...ehr.tokens.issued.values()][0]?.clientId).toBe(SERVICE_OUTBOUND_CLIENT_ID);
  });

  it('streams every attachment; bytes match the declared size and SHA-1; no bearer to the storage origin', async () => {
    const docs = await client.search<DocumentReference>('DocumentReference', { patient: `Patient/${ehr.seeded.patientId}` });
    const checked: string[] = [];
    for (const doc of docs) {
      const attachment = doc.content?.[0]?.attachment;
      if (!attachment?.url) continue;
      const res = await client.fetchAttachment(attachment.url, { maxBytes: 10_000_000 });
      const sha1 = createHash('sha1');
      let size = 0;
      for await (const chunk of res.body) {
        sha1.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      expect({ id: doc.id, size, hash: sha1.digest('base64') }).toEqual({ id: doc.id, size: attachment.size, hash: attachment.hash });
      checked.push(doc.id as string);
    }
    expect(checked.length).toBe(ehr.seeded.documents.length - 1); // one document carries inline data
    const storage = ehr.requests.filter((r) => r.origin === 'storage');
    expect(storage.length).toBeGreaterThan(0);
    expect(storage.every((r) => !r.authorization)).toBe(true);
    const binaries = ehr.requests.filter((r) => r.origin === 'ehr' && r.path.includes('/Binary/'));
    expect(binaries.length).toBeGreaterThan(0);
    expect(binaries.every((r) => r.authorization)).toBe(true);
  });

  it('an EHR 500 surfaces as a retryable error keeping the status; the next call succeeds', async () => {
    const rule = ehr.faults.add({ path: `/Patient/${ehr.seeded.patientId}`, status: 500, times: 1 });
    const err = await client.read('Patient', ehr.seeded.patientId).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundHttpError);
    expect(err).toMatchObject({ status: 500, retryable: true });
    expect(rule.hits).toBe(1);
    expect((await client.read<Patient>('Patient', ehr.seeded.patientId)).id).toBe(ehr.seeded.patientId);
  });

  it('a missing document is a non-retryable 404', async () => {
    const err = (await client.read('DocumentReference', 'no-such-doc').catch((e: unknown) => e)) as OutboundHttpError;
    expect(err).toBeInstanceOf(OutboundHttpError);
    expect(err).toMatchObject({ status: 404, retryable: false });
  });
});
