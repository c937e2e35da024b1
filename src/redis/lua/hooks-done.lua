-- Forgets webhook events that were delivered or given up on (§11.7). hooks-lib.lua comes first.
--   KEYS[1] the outbox stream  KEYS[2] its data hash  KEYS[3] its retries  KEYS[4] its attempts
--   ARGV[1] the consumer group  ARGV[2], … the events' stream ids
for i = 2, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])[1]
  forgetHook(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[i], entry and entry[2][2])
end
return 0
