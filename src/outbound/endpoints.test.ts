import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeProtectedHeader, exportJWK, exportPKCS8, generateKeyPair, jwtVerify } from 'jose';
import { http, HttpResponse } from 'msw';
import { setupServer } from 'msw/node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseNetwork } from '../network/network.ts';
import { createParticipantFhirClients, loadClientAssertionKey, type ScopeReport } from './endpoints.ts';
import { DEFAULT_OUTBOUND_SCOPE } from './outbound-scope.ts';

const server = setupServer();
let dir: string;
beforeAll(async () => {
  server.listen({ onUnhandledFrame: 'error' });
  dir = await mkdtemp(path.join(os.tmpdir(), 'outbound-keys-'));
});
afterEach(() => server.resetHandlers());
afterAll(async () => {
  server.close();
  await rm(dir, { recursive: true, force: true });
});

const participant = (id: string, fhir: Record<string, unknown>) => ({ id, name: id, roles: ['referrer'], organization: { reference: `Organization/${id}` }, clients: [], fhir });

describe('createParticipantFhirClients', () => {
  it('builds one client per fhir block: SMART-authenticated where tokenUrl is set, anonymous otherwise', async () => {
    const ec = await generateKeyPair('ES384', { extractable: true });
    await writeFile(path.join(dir, 'ehr.jwk.json'), JSON.stringify({ ...(await exportJWK(ec.privateKey)), kid: 'ehr-key' }));
    const network = parseNetwork(
      {
        participants: [
          participant('st-olaf', { baseUrl: 'https://ehr.test/fhir/R4', tokenUrl: 'https://ehr.test/token', clientId: 'so-service', scope: 'system/Patient.r', privateKeyFile: 'ehr.jwk.json', timeoutMs: 5000 }),
          participant('sandbox', { baseUrl: 'http://sandbox.test/fhir' }),
          { ...participant('no-fhir', {}), roles: ['auditor'], fhir: undefined },
        ],
      },
      'network.json',
    );
    const clients = await createParticipantFhirClients(network, { keyBaseDir: dir });
    expect([...clients.keys()]).toEqual(['st-olaf', 'sandbox']);

    const seen: Record<string, string | null> = {};
    server.use(
      http.post('https://ehr.test/token', async ({ request }) => {
        const form = new URLSearchParams(await request.text());
        const assertion = form.get('client_assertion')!;
        expect(decodeProtectedHeader(assertion)).toMatchObject({ alg: 'ES384', kid: 'ehr-key' });
        await jwtVerify(assertion, ec.publicKey, { issuer: 'so-service', audience: 'https://ehr.test/token' });
        expect(form.get('scope')).toBe('system/Patient.r');
        return HttpResponse.json({ access_token: 'at-1', token_type: 'bearer', expires_in: 600 });
      }),
      http.get('https://ehr.test/fhir/R4/Patient/1', ({ request }) => ((seen.ehr = request.headers.get('authorization')), HttpResponse.json({ resourceType: 'Patient', id: '1' }))),
      http.get('http://sandbox.test/fhir/Patient/1', ({ request }) => ((seen.sandbox = request.headers.get('authorization')), HttpResponse.json({ resourceType: 'Patient', id: '1' }))),
    );
    await clients.get('st-olaf')!.read('Patient', '1');
    await clients.get('sandbox')!.read('Patient', '1');
    expect(seen).toEqual({ ehr: 'Bearer at-1', sandbox: null });
  });

  it('asks for the derived default scope, and reports what a narrowed scope or a smaller grant leaves out (once per change)', async () => {
    const ec = await generateKeyPair('ES384', { extractable: true });
    await writeFile(path.join(dir, 'scope.jwk.json'), JSON.stringify({ ...(await exportJWK(ec.privateKey)), kid: 'scope-key' }));
    const ehr = (id: string, extra: Record<string, unknown> = {}) =>
      participant(id, { baseUrl: `https://${id}.test/fhir`, tokenUrl: `https://${id}.test/token`, clientId: 'so-service', privateKeyFile: 'scope.jwk.json', ...extra });
    const network = parseNetwork({ participants: [ehr('full'), ehr('narrow', { scope: 'system/DocumentReference.rs system/Binary.r' })] }, 'network.json');
    const reports: ScopeReport[] = [];
    const clients = await createParticipantFhirClients(network, { keyBaseDir: dir, onScopeReport: (r) => reports.push(r) });
    // At start-up: only the narrowed participant, naming every need its scope leaves out.
    expect(reports).toEqual([
      {
        participantId: 'narrow',
        stage: 'requested',
        missing: ['system/DocumentReference.c', 'system/DiagnosticReport.r', 'system/DiagnosticReport.s', 'system/ImagingStudy.r', 'system/ImagingStudy.s', 'system/Consent.r', 'system/Patient.r', 'system/Organization.r', 'system/Communication.c', 'system/Communication.s'],
      },
    ]);

    // The EHR grants reads only (as the old default asked): reported when the token arrives, once.
    const requested: (string | null)[] = [];
    let n = 0;
    server.use(
      http.post('https://full.test/token', async ({ request }) => {
        requested.push(new URLSearchParams(await request.text()).get('scope'));
        return HttpResponse.json({ access_token: `at-${++n}`, token_type: 'bearer', expires_in: 1, scope: 'system/*.rs' });
      }),
      http.get('https://full.test/fhir/Patient/1', () => HttpResponse.json({ resourceType: 'Patient', id: '1' })),
    );
    for (let i = 0; i < 2; i++) await clients.get('full')!.read('Patient', '1');
    expect(requested[0]).toBe(DEFAULT_OUTBOUND_SCOPE);
    expect(n).toBe(2);
    expect(reports.slice(1)).toEqual([{ participantId: 'full', stage: 'granted', missing: ['system/DocumentReference.c', 'system/Communication.c'] }]);
  });

  it("the client assertion's aud is the network file's fhir.tokenUrl exactly as written, trailing slash or not", async () => {
    const ec = await generateKeyPair('ES384', { extractable: true });
    await writeFile(path.join(dir, 'aud.jwk.json'), JSON.stringify({ ...(await exportJWK(ec.privateKey)), kid: 'aud-key' }));
    const tokenUrls = { slash: 'https://slash.test/oauth2/token/', bare: 'https://bare.test/oauth2/token', origin: 'https://origin.test' };
    const network = parseNetwork(
      { participants: Object.entries(tokenUrls).map(([id, tokenUrl]) => participant(id, { baseUrl: `https://${id}.test/fhir`, tokenUrl, clientId: 'so-service', privateKeyFile: 'aud.jwk.json' })) },
      'network.json',
    );
    const clients = await createParticipantFhirClients(network, { keyBaseDir: dir });
    const audiences: Record<string, unknown> = {};
    for (const [id, tokenUrl] of Object.entries(tokenUrls)) {
      server.use(
        http.post(tokenUrl, async ({ request }) => {
          const { payload } = await jwtVerify(new URLSearchParams(await request.text()).get('client_assertion') as string, ec.publicKey);
          audiences[id] = payload.aud;
          return HttpResponse.json({ access_token: 'at', token_type: 'bearer' });
        }),
        http.get(`https://${id}.test/fhir/Patient/1`, () => HttpResponse.json({ resourceType: 'Patient', id: '1' })),
      );
      await clients.get(id)!.read('Patient', '1');
    }
    expect(audiences).toEqual(tokenUrls);
  });

  it('fails at start-up when a key file is missing, naming the participant', async () => {
    const network = parseNetwork({ participants: [participant('st-olaf', { baseUrl: 'https://ehr.test/fhir', tokenUrl: 'https://ehr.test/token', clientId: 'c', privateKeyFile: 'nope.pem' })] }, 'n.json');
    await expect(createParticipantFhirClients(network, { keyBaseDir: dir })).rejects.toThrow(`participant st-olaf: cannot use fhir.privateKeyFile ${path.join(dir, 'nope.pem')}: ENOENT`);
  });
});

describe('loadClientAssertionKey', () => {
  it('reads a PKCS#8 PEM RSA key as RS384 with a thumbprint kid', async () => {
    const rsa = await generateKeyPair('RS384', { extractable: true });
    const file = path.join(dir, 'rsa.pem');
    await writeFile(file, await exportPKCS8(rsa.privateKey));
    const loaded = await loadClientAssertionKey(file);
    expect(loaded.alg).toBe('RS384');
    expect(loaded.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('refuses a public JWK and a key of the wrong curve', async () => {
    const ec = await generateKeyPair('ES384', { extractable: true });
    await writeFile(path.join(dir, 'public.json'), JSON.stringify(await exportJWK(ec.publicKey)));
    await expect(loadClientAssertionKey(path.join(dir, 'public.json'))).rejects.toThrow('the JWK has no private part');
    const p256 = await generateKeyPair('ES256', { extractable: true });
    await writeFile(path.join(dir, 'p256.pem'), await exportPKCS8(p256.privateKey));
    await expect(loadClientAssertionKey(path.join(dir, 'p256.pem'))).rejects.toThrow('the key must be RSA (RS384) or EC P-384 (ES384)');
  });
});
