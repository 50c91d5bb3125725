# The ibex daemon in a container, configured by the environment:
#   IBEX_CONTROL_URL=postgresql://ibex@ctlhost/ibex  (required)
#   PGPASSWORD / PGPASSFILE / PGSSLMODE …            (libpq's variables, for the control db and the dbs)
# Build from a checkout:  docker build -t ibex .
# Run:                    docker run -e IBEX_CONTROL_URL=… ibex          (the daemon, `ibex run`)
#                         docker run --rm -e IBEX_CONTROL_URL=… ibex ibex status
# The build stage compiles src/ to dist/ and packs the npm tarball; the image installs only
# that tarball (production dependencies, compiled JavaScript, no tsx).
FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY . .
RUN npm run build && npm pack --pack-destination /tmp && mv /tmp/ibex-replication-*.tgz /tmp/ibex.tgz

FROM node:20-slim
ENV NODE_ENV=production
COPY --from=build /tmp/ibex.tgz /tmp/ibex.tgz
# better-sqlite3 ships prebuilt binaries for linux x64/arm64 glibc; no compiler needed.
RUN npm install -g /tmp/ibex.tgz && rm /tmp/ibex.tgz && npm cache clean --force
USER node
WORKDIR /home/node
# `ibex run` stops gracefully on SIGTERM (docker stop) and reloads its configuration on SIGHUP.
STOPSIGNAL SIGTERM
ENTRYPOINT []
CMD ["ibex", "run"]
