# The chat server on Bun's official slim image. Built by `fly deploy`; runs anywhere Docker does:
#   docker build -t bun-chat . && docker run -p 3000:3000 -v chat_data:/app/data bun-chat

FROM oven/bun:1.4-slim AS deps
WORKDIR /app
COPY package.json bun.lock ./
# Runtime dependencies only (hono, zod), exactly as locked.
RUN bun install --frozen-lockfile --production

FROM oven/bun:1.4-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json server.ts ./
COPY public ./public
# History and sessions: DATABASE_PATH defaults to ./data/chat.sqlite, where fly.toml mounts the
# volume. The process runs as root because Fly mounts volumes owned by root.
RUN mkdir -p /app/data
EXPOSE 3000
STOPSIGNAL SIGTERM
CMD ["bun", "run", "server.ts"]
