import type { Express } from 'express';

/** A route as registered with Express: method (`ALL` for `router.all`) and path pattern. */
export interface RegisteredRoute {
  method: string;
  path: string;
}

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/** Every route of an Express 5 app, routers included (for the access-matrix test: each needs a row in the access rules). */
export function listRoutes(app: Express): RegisteredRoute[] {
  const out: RegisteredRoute[] = [];
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        const methods = Object.keys(layer.route.methods).filter((m) => layer.route?.methods[m]);
        for (const m of methods) out.push({ method: m === '_all' ? 'ALL' : m.toUpperCase(), path: layer.route.path });
      } else if (layer.handle?.stack) {
        walk(layer.handle.stack);
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return out;
}
