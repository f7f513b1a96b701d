import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../scripts/build.ts';
import { main as keys } from '../scripts/keys.ts';
import { AuditLog } from '../src/audit/audit-log.ts';
import { EXAMPLE_KEY_THUMBPRINTS, findExampleKeys } from '../src/auth/example-keys.ts';
import { openDatabase } from '../src/store/database.ts';
import { ResourceStore } from '../src/store/resource-store.ts';
import { spawnLogged } from './support/run-process.ts';
import { createProcessDatabase } from './support/service-process.ts';
import { freePort } from './support/service.ts';
import { getAccessToken } from './support/tokens.ts';

const ROOT = path.join(import.meta.dirname, '..');
const EXAMPLE_KEYS = path.join(ROOT, 'examples', 'keys');

/** Runs `fn` with process.stdout/stderr captured; returns what it returned and what it wrote. */
async function captured<T>(fn: () => Promise<T>): Promise<{ result: T; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => ((stdout += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => ((stderr += chunk), true)) as typeof process.stderr.write;
  try {
    return { result: await fn(), stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

const run = spawnLogged;

/** The process and all its descendants (ps), parents first. */
function processTree(pid: number): { pid: number; command: string }[] {
  const rows = execFileSync('ps', ['-e', '-o', 'pid=,ppid=,args='], { encoding: 'utf8' })
    .split('\n')
    .flatMap((l) => {
      const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l);
      return m ? [{ pid: Number(m[1]), ppid: Number(m[2]), command: m[3] as string }] : [];
    });
  const tree = rows.filter((r) => r.pid === pid);
  for (let i = 0; i < tree.length; i++) tree.push(...rows.filter((r) => r.ppid === (tree[i] as { pid: number }).pid));
  return tree.map(({ pid: p, command }) => ({ pid: p, command }));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether something accepts connections on 127.0.0.1:port. */
function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

describe('example keys are known by thumbprint', () => {
  it('the built-in list is exactly the keys in examples/keys/ (and covers the example network\'s client keys)', async () => {
    const fromFiles = new Map<string, string>();
    for (const file of readdirSync(EXAMPLE_KEYS).filter((f) => f.endsWith('.private.jwk.json'))) {
      const jwk = JSON.parse(readFileSync(path.join(EXAMPLE_KEYS, file), 'utf8')) as JWK;
      fromFiles.set(await calculateJwkThumbprint(jwk, 'sha256'), file.replace('.private.jwk.json', ''));
    }
    expect(fromFiles.size).toBe(9);
    expect(new Map(EXAMPLE_KEY_THUMBPRINTS)).toEqual(fromFiles);
    const network = JSON.parse(readFileSync(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { clients: { clientId: string; jwks?: { keys: JWK[] } }[] }[] };
    const clientKeys = network.participants.flatMap((p) => p.clients.flatMap((c) => (c.jwks?.keys ?? []).map((jwk) => ({ where: c.clientId, jwk }))));
    expect(clientKeys).toHaveLength(7);
    expect((await findExampleKeys(clientKeys)).map((f) => f.split(':')[0])).toEqual(clientKeys.map((k) => k.where));
  });

  it('a copy under another kid is still an example key; a fresh key is not', async () => {
    const example = JSON.parse(readFileSync(path.join(EXAMPLE_KEYS, 'st-olaf-ehr.private.jwk.json'), 'utf8')) as JWK;
    const { stdout } = await captured(async () => undefined);
    expect(stdout).toBe('');
    const dir = await mkdtemp(path.join(tmpdir(), 'so-keys-'));
    try {
      const made = await captured(() => keys(['--out', dir]));
      expect(made.result).toBe(0);
      const fresh = JSON.parse(await readFile(path.join(dir, 'signing-key.private.jwk.json'), 'utf8')) as JWK;
      expect(await findExampleKeys([{ where: 'SIGNING_KEY_FILE', jwk: { ...example, kid: 'renamed' } }, { where: 'fresh', jwk: fresh }])).toEqual(['SIGNING_KEY_FILE: the example key of st-olaf-ehr']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('npm run keys', () => {
  it('writes a signing key, an outbound key and client key pairs (0600), prints where they go, never overwrites', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'so-keys-'));
    try {
      const made = await captured(() => keys(['--out', dir, '--outbound', '--client', 'acme-worklist', '--alg', 'RS384']));
      expect(made.result).toBe(0);
      expect(made.stderr).toBe('');
      const signingFile = path.join(dir, 'signing-key.private.jwk.json');
      expect(made.stdout).toContain(`SIGNING_KEY_FILE=${signingFile}`);
      expect(made.stdout).toContain(`"privateKeyFile": ${JSON.stringify(path.join(dir, 'outbound.private.jwk.json'))}`);
      for (const file of ['signing-key', 'outbound', 'acme-worklist']) {
        const full = path.join(dir, `${file}.private.jwk.json`);
        expect((await stat(full)).mode & 0o777).toBe(0o600);
        const jwk = JSON.parse(await readFile(full, 'utf8')) as JWK;
        expect(jwk).toMatchObject({ kty: 'RSA', alg: 'RS384', use: 'sig', kid: await calculateJwkThumbprint(jwk, 'sha256'), d: expect.any(String) });
      }
      // The client entry printed for the network file holds the public half only.
      const entry = JSON.parse(/\{\n\s+"clientId"[\s\S]*?\n {2}\}/.exec(made.stdout)?.[0] as string) as { clientId: string; jwks: { keys: JWK[] } };
      expect(entry.clientId).toBe('acme-worklist');
      expect(entry.jwks.keys).toHaveLength(1);
      expect(entry.jwks.keys[0]).not.toHaveProperty('d');

      const before = await readFile(signingFile, 'utf8');
      const again = await captured(() => keys(['--out', dir]));
      expect(again.result).toBe(1);
      expect(again.stderr).toContain('exists already: not overwritten');
      expect(await readFile(signingFile, 'utf8')).toBe(before);

      const bad = await captured(() => keys(['--alg', 'HS256']));
      expect(bad.result).toBe(2);
      expect(bad.stderr).toContain('--alg must be ES384 or RS384');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the production start (npm run build, then plain node)', () => {
  let dir: string;
  let networkFile: string;
  let signingKeyFile: string;
  let clientKey: JWK;

  beforeAll(async () => {
    build();
    dir = await mkdtemp(path.join(tmpdir(), 'so-prod-'));
    const made = await captured(() => keys(['--out', path.join(dir, 'keys'), '--client', 'acme-worklist']));
    expect(made.result).toBe(0);
    signingKeyFile = path.join(dir, 'keys', 'signing-key.private.jwk.json');
    clientKey = JSON.parse(await readFile(path.join(dir, 'keys', 'acme-worklist.private.jwk.json'), 'utf8')) as JWK;
    const { d: _d, ...publicKey } = clientKey as JWK & { d: string };
    networkFile = path.join(dir, 'network.json');
    await writeFile(
      networkFile,
      JSON.stringify({
        participants: [{ id: 'acme', name: 'Acme Consults', roles: ['consultant'], organization: { reference: 'Organization/acme', display: 'Acme Consults', identifier: [{ system: 'https://registry.example.org/organizations', value: 'ORG-9001' }] }, clients: [{ clientId: 'acme-worklist', jwks: { keys: [publicKey] }, scope: 'system/Task.rus' }] }],
      }),
    );
  }, 120_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('NODE_ENV=production npm start runs dist/main.js as the service process itself: serves with the keys of npm run keys; SIGTERM to npm ends the whole tree and closes the port', async () => {
    const port = await freePort();
    // The store of the run: PGlite, or a fresh PostgreSQL database when DATABASE_URL is set.
    const database = await createProcessDatabase();
    const proc = run('npm', ['start'], { NODE_ENV: 'production', NETWORK_FILE: networkFile, SIGNING_KEY_FILE: signingKeyFile, ...database.env, HOST: '127.0.0.1', PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` });
    try {
      expect(await proc.waitFor((l) => l.msg === 'listening')).toMatchObject({ port, store: database.kind });
      const tree = processTree(proc.pid);
      // npm, then the service: the shell exec'd into node, no TypeScript loader.
      expect(tree.map((p) => p.command).slice(0, 2)).toEqual([expect.stringMatching(/^npm/), 'node dist/main.js']);
      const url = `http://127.0.0.1:${port}`;
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const token = await getAccessToken(url, 'acme-worklist', { privateJwk: clientKey });
      const worklist = await fetch(`${url}/fhir/Task?owner=Organization/acme`, { headers: { authorization: `Bearer ${token}` } });
      expect(worklist.status).toBe(200);
      expect(((await worklist.json()) as { resourceType: string; total?: number }).resourceType).toBe('Bundle');
      // What the compiled modules read from disk: the OpenAPI document, the reference page's assets (node_modules), the profiles.
      expect(((await (await fetch(`${url}/openapi.json`)).json()) as { openapi: string }).openapi).toMatch(/^3\.1/);
      const docs = await fetch(`${url}/docs`);
      expect(docs.status).toBe(200);
      const script = /src="([^"]+\.js)"/.exec(await docs.text())?.[1] as string;
      expect((await fetch(new URL(script, `${url}/docs/`))).status).toBe(200);
      expect((await fetch(`${url}/fhir/StructureDefinition`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);

      process.kill(proc.pid, 'SIGTERM');
      await proc.exit;
      expect(tree.filter((p) => alive(p.pid))).toEqual([]);
      expect(await portOpen(port)).toBe(false);
      const messages = proc.lines.filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(messages).toContain('shutting down');
      expect(messages.at(-1)).toBe('stopped');
    } finally {
      if (alive(proc.pid)) process.kill(proc.pid, 'SIGKILL');
      await database.drop();
    }
  }, 150_000);

  it('npm start (development: the sources through tsx) is the service process too: Ctrl-C (SIGINT to the process group, which npm forwards as well) drains once and ends the tree', async () => {
    const port = await freePort();
    const proc = run('npm', ['start'], { DATA_DIR: path.join(dir, 'dev-data'), HOST: '127.0.0.1', PORT: String(port) }, { ownProcessGroup: true });
    try {
      await proc.waitFor((l) => l.msg === 'listening');
      const tree = processTree(proc.pid);
      // (tsx's loader may have an esbuild service process below the service: it must go too.)
      expect(tree.map((p) => p.command).slice(0, 2)).toEqual([expect.stringMatching(/^npm/), 'node --import tsx src/main.ts']);
      process.kill(-proc.pid, 'SIGINT');
      await proc.exit;
      expect(tree.filter((p) => alive(p.pid))).toEqual([]);
      expect(await portOpen(port)).toBe(false);
      // The doubled SIGINT is one request to shut down: a full drain, not the second signal's exit.
      const messages = proc.lines.filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(messages.filter((m) => m === 'shutting down')).toHaveLength(1);
      expect(messages).not.toContain('second signal during shutdown: exiting now');
      expect(messages.at(-1)).toBe('stopped');
    } finally {
      if (alive(proc.pid)) process.kill(-proc.pid, 'SIGKILL');
    }
  }, 150_000);

  it('the audit archive export runs from the compiled build: node dist/cli/audit-export.js --before DATE, no TypeScript loader', async () => {
    const database = await createProcessDatabase();
    try {
      // Three AuditEvents from March 2019 and one from now, written by the sources in this process.
      const opened = await openDatabase({ databaseUrl: database.env.DATABASE_URL, dataDir: database.env.DATA_DIR as string, poolSize: 2 });
      let clock = new Date();
      const ids: string[] = [];
      try {
        await opened.migrate();
        const store = new ResourceStore(opened.db, { validate: () => undefined }, () => clock);
        const audit = new AuditLog({ store, network: { get: (id: string) => ({ organization: { reference: `Organization/${id}` } }) }, now: () => clock, publicUrl: 'http://localhost' });
        for (const n of [1, 2, 3, 4]) {
          clock = n === 4 ? new Date() : new Date(Date.UTC(2019, 2, n));
          const event = await audit.record({ action: 'read', outcome: 'success', agent: { participantId: 'acme', clientId: 'acme-worklist' }, entities: [{ reference: `ServiceRequest/sr-${n}` }] });
          ids.push(event.id as string);
        }
      } finally {
        await opened.close();
      }
      const out = path.join(dir, `archive-${database.kind}.ndjson`);
      const proc = run(process.execPath, ['dist/cli/audit-export.js', '--before', '2020-01-01', '--out', out], { NODE_ENV: 'production', NETWORK_FILE: networkFile, SIGNING_KEY_FILE: signingKeyFile, ...database.env });
      expect(await proc.exit).toBe(0);
      expect(proc.stderr).toBe('');
      expect(proc.lines[0]).toBe(`exporting AuditEvents last written before 2020-01-01T00:00:00.000Z from the ${database.kind} store to ${out}`);
      expect(proc.lines).toContainEqual(expect.stringMatching(/^3 AuditEvents written and 3 deleted in \d+\.\d s$/));
      const archived = (await readFile(out, 'utf8')).trimEnd().split('\n').map((l) => (JSON.parse(l) as { resourceType: string; id: string }));
      expect(archived.map((e) => [e.resourceType, e.id])).toEqual(ids.slice(0, 3).map((id) => ['AuditEvent', id]));

      // Bad arguments: exit 2 with the usage, which names both ways to run it.
      const bad = run(process.execPath, ['dist/cli/audit-export.js'], { NODE_ENV: 'production', NETWORK_FILE: networkFile, SIGNING_KEY_FILE: signingKeyFile, ...database.env });
      expect(await bad.exit).toBe(2);
      expect(bad.stderr).toContain('audit:export: --before DATE is required');
      expect(bad.stderr).toContain('or: node dist/cli/audit-export.js --before DATE');
    } finally {
      await database.drop();
    }
  }, 60_000);

  it('NODE_ENV=production refuses the example keys, named explicitly and renamed, with one start-up error naming each place', async () => {
    const signing = path.join(dir, 'copied-signing-key.json');
    const example = JSON.parse(await readFile(path.join(EXAMPLE_KEYS, 'lakeside-worklist.private.jwk.json'), 'utf8')) as JWK;
    await writeFile(signing, JSON.stringify({ ...example, kid: 'our-own-key' }));
    // The example network as an operator would copy it: its outbound key path made absolute.
    const network = JSON.parse(await readFile(path.join(ROOT, 'examples', 'network.json'), 'utf8')) as { participants: { fhir?: { privateKeyFile?: string } }[] };
    for (const p of network.participants) if (p.fhir?.privateKeyFile) p.fhir.privateKeyFile = path.join(ROOT, p.fhir.privateKeyFile);
    const copied = path.join(dir, 'example-network.json');
    await writeFile(copied, JSON.stringify(network));
    const proc = run(process.execPath, ['dist/main.js'], { NODE_ENV: 'production', NETWORK_FILE: copied, SIGNING_KEY_FILE: signing, DATA_DIR: path.join(dir, 'refused'), PORT: '0' });
    expect(await proc.exit).toBe(1);
    const fatal = proc.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: string; msg: string; err?: { type: string; message: string } }).filter((l) => l.level === 'fatal');
    expect(fatal).toHaveLength(1);
    expect(fatal[0]?.msg).toBe('start-up failed');
    expect(fatal[0]?.err?.type).toBe('ExampleKeyError');
    const message = fatal[0]?.err?.message as string;
    expect(message).toContain('SIGNING_KEY_FILE: the example key of lakeside-worklist');
    expect(message).toContain('clients[0].jwks.keys[0] (client st-olaf-ehr): the example key of st-olaf-ehr');
    expect(message).toContain('st-olaf fhir.privateKeyFile (outbound key): the example key of service-outbound');
    expect(message).toContain('npm run keys');
    // Seven client registrations (the example network's clients), the signing key and the outbound key.
    expect(message.split('\n').filter((l) => l.startsWith('  - '))).toHaveLength(9);
    // Refused before the store was opened: nothing listened.
    expect(proc.lines.some((l) => l.includes('"listening"'))).toBe(false);
  }, 60_000);
});
