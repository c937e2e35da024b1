# The chat server as one executable (`bun run build`, deploy/build.ts) on a distroless base: no
# shell, no package manager, no node_modules, no sources. A compiled Bun binary needs only glibc.
# Built by `fly deploy`; runs anywhere Docker does:
#   docker build -t bun-chat . && docker run -p 3000:3000 -v chat_data:/app/data bun-chat

FROM oven/bun:1.4-slim AS build
WORKDIR /src
COPY package.json bun.lock ./
# Runtime dependencies only (hono, zod, jose, unhomoglyph), exactly as locked: the build needs nothing else.
RUN bun install --frozen-lockfile --production
COPY tsconfig.json server.ts ./
COPY src ./src
COPY public ./public
COPY deploy/build.ts ./deploy/
RUN bun run build

FROM gcr.io/distroless/base-nossl-debian12
WORKDIR /app
COPY --from=build /src/dist/bun-chat /usr/local/bin/bun-chat
# History and sessions: DATABASE_PATH defaults to ./data/chat.sqlite under WORKDIR, where fly.toml
# mounts the volume (the server creates the folder when nothing is mounted). The process runs as
# root because Fly mounts volumes owned by root.
EXPOSE 3000
STOPSIGNAL SIGTERM
CMD ["/usr/local/bin/bun-chat"]
