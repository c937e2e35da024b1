-- A token bucket shared by every instance: HELLO_RATE_PER_MINUTE per address, RATE_LIMIT_BURST
-- per user. Forgotten once it would be full again, so a quiet key costs nothing. Each instance
-- passes its own clock; one behind the last taker's refills nothing, so it never goes backwards.
-- The same rule as core/bucket.ts's TokenBucket: test/rate-limits.test.ts runs one table against both.
--   KEYS[1] the bucket   ARGV[1] burst   ARGV[2] tokens refilled per ms   ARGV[3] now (epoch ms)
-- Returns {1 when a token was taken else 0, the tokens left (a string: Redis would truncate it), the time}.
local burst, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local saved = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens, at = tonumber(saved[1]) or burst, tonumber(saved[2]) or now
if now > at then tokens, at = math.min(burst, tokens + (now - at) * rate), now end
local taken = 0
if tokens >= 1 then tokens, taken = tokens - 1, 1 end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate))
return {taken, tostring(tokens), at}
