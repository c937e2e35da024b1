-- A token bucket shared by every instance: HELLO_RATE_PER_MINUTE per address, RATE_LIMIT_BURST
-- per user. Forgotten once it would be full again, so a quiet key costs nothing. Each instance
-- passes its own clock; one behind the last taker's refills nothing, so it never goes backwards.
-- The same rule as core/bucket.ts's TokenBucket: test/rate-limits.test.ts runs one table against both.
--   KEYS the buckets, one token from each in order (a key may repeat)
--   ARGV[1] burst   ARGV[2] tokens refilled per ms   ARGV[3] now (epoch ms)
--   ARGV[4] (optional) the key of Redis's data mark, whose value is returned last: levels seen
--           under another mark than the instance's (Redis lost its data) are not kept for a restore
-- Returns, per key, {1 when a token was taken else 0, the tokens left (a string: Redis would truncate it), the time}, flat.
local burst, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS do
  local saved = redis.call('HMGET', KEYS[i], 't', 'at')
  local tokens, at = tonumber(saved[1]) or burst, tonumber(saved[2]) or now
  if now > at then tokens, at = math.min(burst, tokens + (now - at) * rate), now end
  local taken = 0
  if tokens >= 1 then tokens, taken = tokens - 1, 1 end
  redis.call('HSET', KEYS[i], 't', tostring(tokens), 'at', tostring(at))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate))
  out[#out + 1] = taken
  out[#out + 1] = tostring(tokens)
  out[#out + 1] = at
end
if ARGV[4] then out[#out + 1] = redis.call('GET', ARGV[4]) or '' end
return out
