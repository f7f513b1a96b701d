/**
 * The route guard: the rows of `ROUTE_RULES` (access/route-rules.ts) enforced in front of every
 * route, so a route cannot forget its role or scope check. Routers ask for the guard of each
 * route they register; asking for a route without a row is a programming error at start-up.
 */
import { OperationOutcomeError } from '@medplum/core';
import type { RequestHandler } from 'express';
import { recordRefusal, requestedEntity } from '../audit/audited-read.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { requireCaller } from '../auth/middleware.ts';
import { requireRole, requireScope } from './caller.ts';
import type { Caller } from './caller.ts';
import { ruleFor, type RouteAccess, type RouteMethod } from './route-rules.ts';

/** Throws 403 unless `caller` holds the roles and scope `access` asks for (any participant passes the other kinds). */
function authorize(access: RouteAccess, caller: Caller): void {
  if (access.kind !== 'roles') return;
  requireRole(caller, access.roles);
  if (access.scope) requireScope(caller, access.scope.type, access.scope.interaction);
}

export type Guard = (method: RouteMethod, path: string) => RequestHandler;

/** Builds `guard(method, path)`: the middleware enforcing that route's row; refusals of PHI reads are audited. */
export function createGuard(audit: Pick<AuditLog, 'record'>): Guard {
  return (method, path) => {
    const rule = ruleFor(method, path);
    if (!rule) throw new Error(`no access rule for ${method} ${path}: add a row to ROUTE_RULES (src/access/route-rules.ts)`);
    const { access } = rule;
    return async (req, _res, next) => {
      if (access.kind === 'public') return next();
      const caller = requireCaller();
      try {
        authorize(access, caller);
      } catch (err) {
        if (access.kind === 'roles' && access.audit && err instanceof OperationOutcomeError) {
          const id = req.params[access.audit.param];
          await recordRefusal(audit, caller, { action: access.audit.action, requested: typeof id === 'string' ? requestedEntity(access.audit.type, id) : [] }, err);
        }
        throw err;
      }
      next();
    };
  };
}
