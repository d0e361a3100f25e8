# syntax=docker/dockerfile:1
#
# metrics-proxy as a container image: the package exactly as `npm pack` publishes it,
# with the production dependencies from package-lock.json, run as a non-root user.
#
#   docker build -t metrics-proxy .
#   docker run --rm -p 8000:8000 -e METRICS_PROXY_UPSTREAM=http://host.docker.internal:3000 metrics-proxy
#
# test/package.test.ts builds the same production tree without Docker and checks this file's contract.

# One Node LTS major for both stages (engines: >=20). Override with --build-arg NODE_MAJOR=24.
ARG NODE_MAJOR=22

# ---- build: dev dependencies, compile, pack -------------------------------------------------
FROM node:${NODE_MAJOR}-alpine AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are here; the build runs below.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json README.md ./
COPY bin ./bin
COPY src ./src
COPY config ./config
# The tarball is what `npm publish` would upload; unpack it with the lockfile beside it.
# The bin's `#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=… node --initial-old-space-size=64 --max-semi-space-size=4`
# needs an env with -S, which Alpine's busybox lacks: in the image the #! line names node itself
# with the first flag (the kernel hands over one argument), and NODE_OPTIONS below gives the
# second (why the flags: bin/metrics-proxy.js). The glibc variable is dropped: musl has no such
# setting.
RUN npm run build \
 && npm pack --ignore-scripts --pack-destination /tmp \
 && mkdir -p /out/package \
 && tar -xzf /tmp/metrics-proxy-*.tgz -C /out/package --strip-components=1 \
 && sed -i '1s|^#!/usr/bin/env -S .*node \(--initial-old-space-size=[0-9]*\) .*$|#!/usr/local/bin/node \1|' /out/package/bin/metrics-proxy.js \
 && cp package-lock.json /out/package/

# ---- runtime: the packed package and its production dependencies only -------------------------
FROM node:${NODE_MAJOR}-alpine AS runtime
ENV NODE_ENV=production
# The bin's second V8 flag (see the build stage's #! rewrite).
ENV NODE_OPTIONS=--max-semi-space-size=4
WORKDIR /opt/metrics-proxy
# Owned by root and read-only to the user that runs it.
COPY --from=build /out/package/ ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && ln -s /opt/metrics-proxy/bin/metrics-proxy.js /usr/local/bin/metrics-proxy
# The image's `node` user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8000
# No curl in the image: Node's fetch. It follows METRICS_PROXY_PORT, and METRICS_PROXY_METRICS_PORT
# when health moves to the admin port; a port given as a flag needs a matching --health-cmd.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "const p=process.env.METRICS_PROXY_METRICS_PORT||process.env.METRICS_PROXY_PORT||8000;fetch('http://127.0.0.1:'+p+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["metrics-proxy"]
