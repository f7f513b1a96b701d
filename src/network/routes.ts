import { badRequest, OperationOutcomeError } from '@medplum/core';
import { Router } from 'express';
import type { Guard } from '../access/route-guard.ts';
import { requireCaller } from '../auth/middleware.ts';
import { invalid, issue } from '../fhir/outcomes.ts';
import { queryParams } from '../http/query-params.ts';
import type { CheckCaller, CheckEhrInput, EhrChecklist } from '../outbound/check-ehr.ts';
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

const CHECK_PARAMETERS = ['patient', 'consent', 'write'] as const;

/**
 * `GET /admin/participants/{id}/check?patient=&consent=&write=true` (admin): the connection check
 * of a participant's EHR (outbound/check-ehr.ts), answered 200 with the checklist whatever its
 * lines say; 404 for an unknown participant or one without a `fhir` block.
 */
export function createParticipantCheckRouter(deps: { guard: Guard; check: (caller: CheckCaller, input: CheckEhrInput) => Promise<EhrChecklist> }): Router {
  const router = Router();
  router.get('/admin/participants/:id/check', deps.guard('GET', '/admin/participants/:id/check'), async (req, res) => {
    const caller = requireCaller();
    const query = queryParams(req);
    const input: CheckEhrInput = { participantId: req.params.id as string };
    for (const [name, values] of Object.entries(query)) {
      if (!(CHECK_PARAMETERS as readonly string[]).includes(name)) throw invalid([issue('not-supported', `Unknown parameter; the check takes ${CHECK_PARAMETERS.join(', ')}`, name.slice(0, 64))]);
      if (values.length !== 1) throw invalid([issue('invalid', 'must be given once', name)]);
    }
    if (query.patient) input.patient = query.patient[0] as string;
    if (query.consent) input.consent = query.consent[0] as string;
    if (query.write) {
      const write = query.write[0];
      if (write !== 'true' && write !== 'false') throw invalid([issue('invalid', 'write must be true or false', 'write')]);
      input.write = write === 'true';
    }
    res.json(await deps.check({ participantId: caller.participantId, clientId: caller.clientId }, input));
  });
  return router;
}
