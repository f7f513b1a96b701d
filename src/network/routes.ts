import { badRequest, OperationOutcomeError } from '@medplum/core';
import { Router } from 'express';
import type { Guard } from '../access/route-guard.ts';
import { ROLES, type Network, type Participant, type Role } from './network.ts';

/** What the directory shows of a participant: enough for an EHR pick-list, no keys or endpoints. */
export interface ParticipantSummary {
  id: string;
  name: string;
  roles: Role[];
  specialties: NonNullable<Participant['specialties']>;
  organization: Participant['organization'];
}

export function summarizeParticipant(p: Participant): ParticipantSummary {
  return {
    id: p.id,
    name: p.name,
    roles: [...p.roles],
    specialties: p.specialties ?? [],
    organization: {
      reference: p.organization.reference,
      ...(p.organization.display ? { display: p.organization.display } : {}),
      // How EHRs recognise it (consent recipients, logical references in what is posted to them).
      ...(p.organization.identifier?.length ? { identifier: p.organization.identifier.map((i) => ({ system: i.system, value: i.value })) } : {}),
    },
  };
}

/**
 * `GET /participants?role=consultant`: the directory of the network, for EHR pick-lists.
 * Any authenticated caller may read it (mount behind the auth middleware).
 */
export function createParticipantsRouter(deps: { guard: Guard; network: Network }): Router {
  const router = Router();
  router.get('/participants', deps.guard('GET', '/participants'), (req, res) => {
    const role = req.query.role;
    if (role !== undefined && (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role))) {
      throw new OperationOutcomeError(badRequest(`role must be one of ${ROLES.join(', ')}`, 'role'));
    }
    res.json({ participants: deps.network.list(role as Role | undefined).map(summarizeParticipant) });
  });
  return router;
}
