# syntax=docker/dockerfile:1
# The compiled service on Node 24 slim, as a non-root user. What it copies mirrors `npm run build`
# (scripts/build.ts: BUILD_ASSETS, RUNTIME_FILES); test/container-files.test.ts checks it.
# examples/ (published example keys) never enters the image: see .dockerignore.
# Reference deployment: compose.yaml; documentation: docs/deployment.md.

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/tsconfig.build.json scripts/build.ts ./scripts/
COPY src ./src
COPY profiles/generated ./profiles/generated
# tsc to dist/, plus the files the compiled modules read next to themselves (the migrations).
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:24-slim
ENV NODE_ENV=production \
    PORT=8080 \
    DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/profiles/generated ./profiles/generated
COPY --from=build /app/package.json ./package.json
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# Liveness, not readiness: /healthz answers while the process runs. /readyz (store reachable) is for
# the load balancer: a database outage must take replicas out of rotation, not restart them in a loop.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM drains (SHUTDOWN_TIMEOUT_SECONDS, default 10) and exits 0: give `docker stop` at least 30 s.
STOPSIGNAL SIGTERM
# The service itself is PID 1 (no npm, no shell): it handles SIGTERM/SIGINT and has no children.
CMD ["node", "dist/main.js"]
