import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_NETWORK_FILE, loadNetwork, NetworkFileError, parseNetwork } from './network.ts';

const ecKey = { kty: 'EC', crv: 'P-384', kid: 'k1', x: 'xx', y: 'yy' };

/** A small valid network file; tests break one entry at a time. */
function networkFile(): Record<string, any> {
  return {
    participants: [
      {
        id: 'st-olaf',
        name: 'St Olaf',
        roles: ['referrer'],
        organization: { reference: 'Organization/st-olaf' },
        clients: [{ clientId: 'st-olaf-ehr', jwks: { keys: [ecKey] }, scope: 'system/*.rs system/ServiceRequest.c' }],
        fhir: { baseUrl: 'https://ehr.st-olaf.example/fhir/R4', tokenUrl: 'https://ehr.st-olaf.example/token', clientId: 'so-service', privateKeyFile: 'keys/st-olaf.jwk.json' },
      },
      {
        id: 'lakeside-consults',
        name: 'Lakeside Clinic',
        roles: ['consultant'],
        specialties: [{ system: 'http://snomed.info/sct', code: '394611003', display: 'Plastic surgery' }],
        organization: { reference: 'Organization/lakeside', display: 'Lakeside', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-2001' }] },
        clients: [{ clientId: 'lakeside-worklist', jwksUri: 'https://lakeside.example/jwks.json', scope: 'system/Task.rus' }],
        notify: { url: 'https://lakeside.example/hooks/second-opinion', secret: 'lakeside-shared-secret-0123456789', email: 'x@lakeside.example' },
      },
      {
        id: 'audit-office',
        name: 'Audit office',
        roles: ['auditor', 'admin'],
        organization: { reference: 'Organization/audit-office' },
        clients: [],
      },
    ],
  };
}

function problemsOf(raw: unknown): string[] {
  try {
    parseNetwork(raw, '/etc/network.json');
  } catch (err) {
    expect(err).toBeInstanceOf(NetworkFileError);
    expect((err as NetworkFileError).message).toBe(`Invalid network file /etc/network.json:\n${(err as NetworkFileError).problems.map((p) => `  - ${p}`).join('\n')}`);
    return (err as NetworkFileError).problems;
  }
  throw new Error('expected the network file to be refused');
}

describe('parseNetwork', () => {
  it('accepts a valid file, keeps extra fields and indexes participants and clients', () => {
    const network = parseNetwork(networkFile(), 'x.json');
    expect(network.isExample).toBe(false);
    expect(network.participants.map((p) => p.id)).toEqual(['st-olaf', 'lakeside-consults', 'audit-office']);
    expect(network.get('lakeside-consults')?.name).toBe('Lakeside Clinic');
    expect(network.get('nobody')).toBeUndefined();
    expect(network.list('consultant').map((p) => p.id)).toEqual(['lakeside-consults']);
    expect(network.list('admin').map((p) => p.id)).toEqual(['audit-office']);
    expect(network.list().length).toBe(3);
    const found = network.findClient('lakeside-worklist');
    expect(found?.participant.id).toBe('lakeside-consults');
    expect(found?.client).toEqual({ clientId: 'lakeside-worklist', jwksUri: 'https://lakeside.example/jwks.json', scope: 'system/Task.rus' });
    expect(network.findClient('nobody')).toBeUndefined();
    expect(network.findByOrganization('Organization/lakeside')?.id).toBe('lakeside-consults');
    expect(network.findByOrganization('Organization/nobody')).toBeUndefined();
    // Loose objects: later issues add fields.
    expect(network.get('st-olaf')?.fhir).toEqual({ baseUrl: 'https://ehr.st-olaf.example/fhir/R4', tokenUrl: 'https://ehr.st-olaf.example/token', clientId: 'so-service', privateKeyFile: 'keys/st-olaf.jwk.json' });
    expect(network.get('lakeside-consults')?.notify).toEqual({ url: 'https://lakeside.example/hooks/second-opinion', secret: 'lakeside-shared-secret-0123456789', email: 'x@lakeside.example' });
  });

  it('a physician-only participant needs actsFor naming a referrer', () => {
    const file = networkFile();
    file.participants[2].roles = ['physician'];
    expect(problemsOf(file)).toEqual(['participants[2] (audit-office).actsFor: is required for a participant with the physician role (the referrer and the practitioners whose referrals it may read)']);
    file.participants[2].actsFor = { referrer: 'lakeside-consults', practitioners: ['Patient/x'] };
    expect(problemsOf(file)).toEqual([
      'participants[2] (audit-office).actsFor.practitioners[0]: must be a Practitioner reference (Practitioner/<id> or an absolute URL)',
      'participants[2] (audit-office).actsFor.referrer: "lakeside-consults" is not a participant with the referrer role',
    ]);
    file.participants[2].actsFor = { referrer: 'st-olaf', practitioners: ['Practitioner/dr-nilsen', 'https://ehr.st-olaf.example/fhir/R4/Practitioner/dr-berg'] };
    expect(parseNetwork(file, 'x.json').get('audit-office')?.actsFor?.practitioners).toHaveLength(2);
  });

  it('checks a webhook: an http(s) URL and a secret of at least 24 characters', () => {
    const file = networkFile();
    file.participants[1].notify = { url: 'ftp://lakeside.example/hook', secret: 'short' };
    expect(problemsOf(file)).toEqual([
      'participants[1] (lakeside-consults).notify.url: Invalid URL',
      'participants[1] (lakeside-consults).notify.secret: must be at least 24 characters (a random shared secret)',
    ]);
    file.participants[1].notify = { url: 'https://lakeside.example/hook' };
    expect(problemsOf(file)).toEqual(['participants[1] (lakeside-consults).notify.secret: Invalid input: expected string, received undefined']);
  });

  it('refuses private key material, naming the entry', () => {
    const file = networkFile();
    file.participants[0].clients[0].jwks.keys.push({ ...ecKey, kid: 'k2', d: 'secret' });
    expect(problemsOf(file)).toEqual(['participants[0] (st-olaf).clients[0].jwks.keys[1]: private key material is not allowed']);
  });

  it('recordSet push is for a consultant with a FHIR server', () => {
    const file = networkFile();
    file.participants[1].recordSet = 'push';
    file.participants[0].recordSet = 'push';
    expect(problemsOf(file)).toEqual([
      'participants[0] (st-olaf).recordSet: push is for a participant with the consultant role (its record set is pushed to its own FHIR server)',
      'participants[1] (lakeside-consults).fhir.baseUrl: is required for recordSet push (the record set is pushed to this FHIR server)',
    ]);
    file.participants[0].recordSet = 'pull';
    file.participants[1].fhir = { baseUrl: 'https://fhir.lakeside.example/R4' };
    expect(parseNetwork(file, 'x.json').get('lakeside-consults')?.recordSet).toBe('push');
    file.participants[1].recordSet = 'always';
    expect(problemsOf(file)).toEqual(['participants[1] (lakeside-consults).recordSet: Invalid option: expected one of "pull"|"push"']);
  });

  it('names every bad entry at once', () => {
    const file = networkFile();
    file.participants[1].clients[0].jwks = { keys: [ecKey] }; // both jwks and jwksUri
    file.participants[2].roles = ['auditor', 'janitor'];
    delete file.participants[2].id;
    file.participants[0].clients[0].scope = 'system/*.rs launch';
    delete file.participants[0].fhir;
    file.participants.push({ ...networkFile().participants[1], id: 'st-olaf', clients: [{ clientId: 'st-olaf-ehr', jwksUri: 'https://x.example/jwks', scope: 'system/Task.r' }] });
    expect(problemsOf(file)).toEqual([
      'participants[0] (st-olaf).clients[0].scope: not a SMART system scope: launch',
      'participants[0] (st-olaf).fhir.baseUrl: is required for a participant with the referrer role (records are pulled from it and opinions posted back to it)',
      'participants[1] (lakeside-consults).clients[0]: give either jwks or jwksUri, not both',
      'participants[2].id: Invalid input: expected string, received undefined',
      'participants[2].roles[1]: Invalid option: expected one of "referrer"|"consultant"|"physician"|"auditor"|"admin"|"operator"',
      'participants[3] (st-olaf).id: duplicate participant id "st-olaf" (also participants[0])',
      'participants[3] (st-olaf).organization.reference: duplicate organization "Organization/lakeside" (also participants[1])',
      'participants[3] (st-olaf).organization.identifier[0]: identifier https://registry.example.org/organizations|ORG-2001 also names participants[1]',
      'participants[3] (st-olaf).clients[0].clientId: duplicate clientId "st-olaf-ehr" (also participants[0].clients[0])',
    ]);
  });

  it('checks ids, roles, organization, keys and URLs', () => {
    const file = networkFile();
    file.participants[0].id = 'St Olaf';
    file.participants[0].organization.reference = 'Practitioner/1';
    file.participants[1].roles = [];
    file.participants[1].clients[0] = { clientId: 'lakeside-worklist', scope: 'system/Task.rus' };
    file.participants[2].clients = [{ clientId: 'a b', jwks: { keys: [{ kty: 'oct', kid: 'x' }] }, scope: '' }];
    expect(problemsOf(file)).toEqual([
      'participants[0] (St Olaf).id: must be a slug: lower-case letters, digits and hyphens (at most 64)',
      'participants[0] (St Olaf).organization.reference: must be Organization/<id>',
      'participants[1] (lakeside-consults).roles: must list at least one role',
      "participants[1] (lakeside-consults).clients[0]: needs jwks or jwksUri (the client's public keys)",
      'participants[2] (audit-office).clients[0].clientId: must be 1-128 characters of A-Z a-z 0-9 . _ ~ -',
      'participants[2] (audit-office).clients[0].jwks.keys[0].kty: Invalid option: expected one of "RSA"|"EC"',
      'participants[2] (audit-office).clients[0].scope: must list at least one scope',
    ]);
  });

  it('types the outbound SMART client settings of a participant fhir block and keeps unknown members', () => {
    const file = networkFile();
    file.participants[0].fhir = { ...file.participants[0].fhir, scope: 'system/DocumentReference.rs', timeoutMs: 15000, note: 'kept' };
    const fhir = parseNetwork(file, 'x.json').get('st-olaf')?.fhir;
    expect(fhir).toEqual({
      baseUrl: 'https://ehr.st-olaf.example/fhir/R4',
      tokenUrl: 'https://ehr.st-olaf.example/token',
      clientId: 'so-service',
      privateKeyFile: 'keys/st-olaf.jwk.json',
      scope: 'system/DocumentReference.rs',
      timeoutMs: 15000,
      note: 'kept',
    });
    const timeout: number | undefined = fhir?.timeoutMs;
    expect(timeout).toBe(15000);
  });

  it('refuses a fhir tokenUrl without the client settings to use it, naming the entry', () => {
    const file = networkFile();
    delete file.participants[0].fhir.clientId;
    delete file.participants[0].fhir.privateKeyFile;
    file.participants[1].fhir = { baseUrl: 'https://lakeside.example/fhir', tokenUrl: 'https://lakeside.example/token', clientId: 'so', timeoutMs: 0 };
    expect(problemsOf(file)).toEqual([
      'participants[0] (st-olaf).fhir: tokenUrl needs clientId and privateKeyFile (or keys) (SMART Backend Services client settings)',
      'participants[1] (lakeside-consults).fhir.timeoutMs: Too small: expected number to be >=100',
      'participants[1] (lakeside-consults).fhir: tokenUrl needs privateKeyFile (or keys) (SMART Backend Services client settings)',
    ]);
    file.participants[1].fhir = { baseUrl: 'https://lakeside.example/fhir', tokenUrl: 'ftp://lakeside.example/token', clientId: 'so', privateKeyFile: 'k.pem' };
    delete file.participants[0].fhir.tokenUrl;
    expect(problemsOf(file)).toEqual(['participants[1] (lakeside-consults).fhir.tokenUrl: Invalid URL']);
  });

  it('takes fhir.keys instead of privateKeyFile, for key rotation', () => {
    const file = networkFile();
    delete file.participants[0].fhir.privateKeyFile;
    file.participants[0].fhir.keys = [{ file: 'keys/old.jwk.json', retireAfter: '2027-03-15' }, { file: 'keys/new.pem', signFrom: '2027-03-08T09:00:00+01:00' }];
    expect(parseNetwork(file, 'x.json').get('st-olaf')?.fhir?.keys).toEqual([
      { file: 'keys/old.jwk.json', retireAfter: '2027-03-15' },
      { file: 'keys/new.pem', signFrom: '2027-03-08T09:00:00+01:00' },
    ]);
  });

  it('refuses fhir.keys it cannot follow, naming the entry: dates that are not dates, both key forms, a file twice, retirement before signing', () => {
    const file = networkFile();
    file.participants[0].fhir.keys = [
      { file: 'keys/a.jwk.json', signFrom: '2027-02-30' },
      { file: 'keys/b.jwk.json', signFrom: '2027-03-08', retireAfter: '2027-03-01T00:00:00Z' },
      { file: 'keys/a.jwk.json', retireAfter: 'next Tuesday' },
      { file: 'keys/c.jwk.json', signFrom: '2027-03-08T09:00' },
    ];
    const notADate = 'must be a date (2027-03-01) or a date-time with its offset (2027-03-01T09:00:00Z)';
    expect(problemsOf(file)).toEqual([
      `participants[0] (st-olaf).fhir.keys[0].signFrom: ${notADate}`,
      `participants[0] (st-olaf).fhir.keys[2].retireAfter: ${notADate}`,
      `participants[0] (st-olaf).fhir.keys[3].signFrom: ${notADate}`,
      'participants[0] (st-olaf).fhir.keys: give either privateKeyFile or keys, not both',
      'participants[0] (st-olaf).fhir.keys[1].retireAfter: must be later than signFrom',
      'participants[0] (st-olaf).fhir.keys[2].file: "keys/a.jwk.json" is also keys[0]',
    ]);
    file.participants[0].fhir.keys = [];
    delete file.participants[0].fhir.privateKeyFile;
    expect(problemsOf(file)).toEqual(['participants[0] (st-olaf).fhir.keys: must list at least one key']);
  });

  it('refuses a file without participants', () => {
    expect(problemsOf({})).toEqual(['participants: Invalid input: expected array, received undefined']);
    expect(problemsOf({ participants: [] })).toEqual(['participants: must list at least one participant']);
    expect(problemsOf([])).toEqual(['(file): Invalid input: expected object, received array']);
  });
});

describe('parseNetwork: how participants are known on other EHRs', () => {
  it('a consultant needs an identifier: EHRs name it by their own ids', () => {
    const file = networkFile();
    delete file.participants[1].organization.identifier;
    expect(problemsOf(file)).toEqual([
      'participants[1] (lakeside-consults).organization.identifier: is required for a participant with the consultant role (EHRs name it in consents by their own ids; it is recognised by its identifiers)',
    ]);
  });

  it('an identifier names one participant only, and its system is an absolute URI', () => {
    const file = networkFile();
    file.participants[0].organization.identifier = [{ system: 'https://registry.example.org/organizations', value: 'ORG-2001' }];
    file.participants[2].organization.identifier = [{ system: 'registry', value: 'ORG-3001' }];
    expect(problemsOf(file)).toEqual([
      'participants[1] (lakeside-consults).organization.identifier[0]: identifier https://registry.example.org/organizations|ORG-2001 also names participants[0]',
      'participants[2] (audit-office).organization.identifier[0].system: must be an absolute URI (http(s)://..., urn:oid:..., urn:uuid:...)',
    ]);
  });

  it('an EHR may give its own ids of other participants (aliases), for participants that exist, and keep or omit meta.profile', () => {
    const file = networkFile();
    file.participants[0].fhir.aliases = { 'lakeside-consults': 'Organization/44e70d60', nobody: 'Organization/1', 'audit-office': 'Practitioner/1' };
    file.participants[0].fhir.profiles = 'sometimes';
    expect(problemsOf(file)).toEqual([
      'participants[0] (st-olaf).fhir.profiles: Invalid option: expected one of "keep"|"omit"',
      'participants[0] (st-olaf).fhir.aliases.audit-office: must be Organization/<id on this EHR>',
      'participants[0] (st-olaf).fhir.aliases.nobody: "nobody" is not a participant of the network',
    ]);
    file.participants[0].fhir.aliases = { 'lakeside-consults': 'Organization/44e70d60' };
    file.participants[0].fhir.profiles = 'keep';
    expect(parseNetwork(file, 'x.json').get('st-olaf')?.fhir).toMatchObject({ aliases: { 'lakeside-consults': 'Organization/44e70d60' }, profiles: 'keep' });
  });
});

describe('loadNetwork', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'network-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads the shipped example network when no file is given, marked as an example', async () => {
    const network = await loadNetwork();
    expect(network.isExample).toBe(true);
    expect(network.participants.map((p) => [p.id, p.roles])).toEqual([
      ['st-olaf', ['referrer']],
      ['lakeside-consults', ['consultant']],
      ['northfield-pathology', ['consultant']],
      ['riverside-imaging', ['consultant']],
      ['audit-office', ['auditor']],
      ['st-olaf-physicians', ['physician']],
      ['operations', ['operator']],
    ]);
    expect(network.get('st-olaf-physicians')?.actsFor).toEqual({ referrer: 'st-olaf', practitioners: ['Practitioner/dr-nilsen'] });
    expect(network.participants.every((p) => p.name.endsWith('(example)'))).toBe(true);
    expect(network.get('st-olaf')?.fhir?.baseUrl).toBe('http://localhost:8090/fhir/R4');
    const algs = network.participants.flatMap((p) => p.clients.flatMap((c) => c.jwks?.keys.map((k) => k.alg) ?? []));
    expect(new Set(algs)).toEqual(new Set(['ES384', 'RS384']));
    const raw = JSON.parse(await readFile(EXAMPLE_NETWORK_FILE, 'utf8'));
    expect(raw._comment).toMatch(/^EXAMPLE network/);
  });

  it('loads a file given by path, not marked as an example', async () => {
    const file = path.join(dir, 'good.json');
    await writeFile(file, JSON.stringify(networkFile()));
    const network = await loadNetwork(file);
    expect(network.isExample).toBe(false);
    expect(network.list('referrer').map((p) => p.id)).toEqual(['st-olaf']);
  });

  it('names the path of a missing file', async () => {
    const file = path.join(dir, 'missing.json');
    await expect(loadNetwork(file)).rejects.toThrow(`Invalid network file ${file}:\n  - file not found`);
  });

  it('names the path of a file that is not JSON', async () => {
    const file = path.join(dir, 'bad.json');
    await writeFile(file, '{ "participants": [ ');
    const err = await loadNetwork(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetworkFileError);
    expect((err as NetworkFileError).file).toBe(file);
    expect((err as NetworkFileError).message).toMatch(new RegExp(`^Invalid network file ${file}:\\n  - not valid JSON: `));
  });
});
