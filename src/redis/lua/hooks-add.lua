-- Queues webhook events (§11.7) in one step with the writes they tell of, if any (a ban, a mute,
-- a kick off a private room's list: the event lives or dies with its change), then keeps the
-- outbox within WEBHOOK_MAX_PENDING. hooks-lib.lua comes first. A single Redis, as everywhere
-- here: the writes' keys are in ARGV, not KEYS.
--   KEYS[1] the outbox stream  KEYS[2] its data hash  KEYS[3] its retries  KEYS[4] its attempts
--   ARGV[1] the consumer group  ARGV[2] WEBHOOK_MAX_PENDING  ARGV[3] how many writes
--   then each write as its length and its words (the command first),
--   then pairs of an event's field (its webhook-id) and the event
-- Returns how many old events were dropped to make room.
local at = 4
for _ = 1, tonumber(ARGV[3]) do
  local n = tonumber(ARGV[at])
  redis.call(unpack(ARGV, at + 1, at + n))
  at = at + n + 1
end
return queueHooks(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], tonumber(ARGV[2]), at)
