-- Queues live webhook events (joins, leaves, moderation: §11.7), in one step, then keeps the
-- outbox within WEBHOOK_MAX_PENDING. hooks-lib.lua comes first.
--   KEYS[1] the outbox stream  KEYS[2] its data hash  KEYS[3] its retries  KEYS[4] its attempts
--   ARGV[1] the consumer group  ARGV[2] WEBHOOK_MAX_PENDING
--   ARGV[3], ARGV[4], … pairs of an event's field (its webhook-id) and the event
-- Returns how many old events were dropped to make room.
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('XADD', KEYS[1], '*', 'k', ARGV[i])
end
return dropOldestHooks(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], tonumber(ARGV[2]))
