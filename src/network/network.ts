import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOG_FIELDS, type LogFields } from '../log/safe-error.ts';
import {
  checkNetworkRules,
  formatProblemPath,
  NetworkFileSchema,
  type ClientRegistration,
  type NetworkFile,
  type NetworkProblem,
  type Participant,
  type Role,
} from './network-schema.ts';

export type { ClientRegistration, Participant, Role } from './network-schema.ts';
export { ROLES } from './network-schema.ts';

/** The shipped example network (example participants and example keys; never for production). */
export const EXAMPLE_NETWORK_FILE = fileURLToPath(new URL('../../examples/network.json', import.meta.url));

/** A network file that cannot be used; the message names every bad entry. */
export class NetworkFileError extends Error {
  readonly file: string;
  readonly problems: string[];

  constructor(file: string, problems: string[]) {
    super(`Invalid network file ${file}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'NetworkFileError';
    this.file = file;
    this.problems = problems;
  }

  /** The message names the file and its bad entries: configuration, read before any request. */
  [LOG_FIELDS](): LogFields {
    return { message: this.message };
  }
}

/**
 * The participants of the network, indexed for the lookups every request makes
 * (client id -> registration, participant id -> participant).
 */
export class Network {
  readonly isExample: boolean;
  readonly participants: readonly Participant[];
  readonly #byId = new Map<string, Participant>();
  readonly #byClientId = new Map<string, { participant: Participant; client: ClientRegistration }>();
  readonly #byOrganization = new Map<string, Participant>();

  constructor(file: NetworkFile, options: { isExample?: boolean } = {}) {
    this.isExample = options.isExample ?? false;
    this.participants = file.participants;
    for (const participant of file.participants) {
      this.#byId.set(participant.id, participant);
      this.#byOrganization.set(participant.organization.reference, participant);
      for (const client of participant.clients) this.#byClientId.set(client.clientId, { participant, client });
    }
  }

  get(id: string): Participant | undefined {
    return this.#byId.get(id);
  }

  /** All participants, or those holding `role`, in file order. */
  list(role?: Role): Participant[] {
    return role ? this.participants.filter((p) => p.roles.includes(role)) : [...this.participants];
  }

  /** The participant whose Organization this is (e.g. a Task's `owner.reference`). */
  findByOrganization(reference: string): Participant | undefined {
    return this.#byOrganization.get(reference);
  }

  /** The registration of a SMART client and the participant it belongs to. */
  findClient(clientId: string): { participant: Participant; client: ClientRegistration } | undefined {
    return this.#byClientId.get(clientId);
  }
}

/**
 * Validates a parsed network file. Throws NetworkFileError naming every bad entry
 * (`participants[1] (lakeside-consults).clients[0].jwks.keys[0]: private key material is not allowed`).
 */
export function parseNetwork(raw: unknown, file: string, options: { isExample?: boolean } = {}): Network {
  const problems: NetworkProblem[] = [];
  const parsed = NetworkFileSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push({ path: issue.path as (string | number)[], message: issue.message });
  }
  problems.push(...checkNetworkRules(raw));
  if (problems.length > 0 || !parsed.success) {
    problems.sort((a, b) => comparePaths(a.path, b.path));
    throw new NetworkFileError(
      file,
      problems.map((p) => `${formatProblemPath(p.path, raw)}: ${p.message}`),
    );
  }
  return new Network(parsed.data, options);
}

/**
 * Loads the network from `file` (NETWORK_FILE). With no file, loads the shipped example network
 * and marks it `isExample`, so start-up can say so in its first log line.
 */
export async function loadNetwork(file?: string): Promise<Network> {
  const isExample = file === undefined;
  const resolved = path.resolve(file ?? EXAMPLE_NETWORK_FILE);
  let text: string;
  try {
    text = await readFile(resolved, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : `cannot be read (${code ?? 'unknown error'})`;
    throw new NetworkFileError(resolved, [`${why}`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new NetworkFileError(resolved, [`not valid JSON: ${(err as Error).message}`]);
  }
  return parseNetwork(raw, resolved, { isExample });
}

/** Orders problems by participant (file order); problems within one entry keep the order they were found in. */
function comparePaths(a: readonly (string | number)[], b: readonly (string | number)[]): number {
  const index = (p: readonly (string | number)[]) => (p[0] === 'participants' && typeof p[1] === 'number' ? p[1] : -1);
  return index(a) - index(b);
}
