-- Puts a webhook event that failed (or was taken and not tried) back among the retries, due at
-- a time (§11.7). It stays on its consumer's pending list; whichever instance takes it when it is
-- due claims it. An event no longer queued (delivered elsewhere, trimmed) stays gone.
--   KEYS[1] the outbox stream  KEYS[2] its retries  KEYS[3] its attempts
--   ARGV[1] due (ms)  ARGV[2] failed attempts so far  ARGV[3], … the events' stream ids
for i = 3, #ARGV do
  if redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])[1] then
    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[i])
    if ARGV[2] ~= '0' then redis.call('HSET', KEYS[3], ARGV[i], ARGV[2]) end
  end
end
return 0
