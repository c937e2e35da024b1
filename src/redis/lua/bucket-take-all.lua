-- One token from each of its buckets, or from none: a take one bucket refuses spends nothing of
-- the others (issue 21: 7, a room start: the user's bucket and its address's, which rate.ts's
-- RateGate also checks both of before taking from either). Each bucket keeps bucket-take.lua's
-- rule (test/rate-limits.test.ts runs its table against this one too), each with its own rate.
--   KEYS the buckets   ARGV[1] now (epoch ms)
--   ARGV[2i], ARGV[2i + 1] KEYS[i]'s burst and tokens refilled per ms
-- Returns 1 when a token was taken from each, else 0.
local now = tonumber(ARGV[1])
local buckets = {}
local taken = 1
for i = 1, #KEYS do
  local burst, rate = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local saved = redis.call('HMGET', KEYS[i], 't', 'at')
  local tokens, at = tonumber(saved[1]) or burst, tonumber(saved[2]) or now
  if now > at then tokens, at = math.min(burst, tokens + (now - at) * rate), now end
  if tokens < 1 then taken = 0 end
  buckets[i] = { tokens = tokens, at = at, life = math.ceil(burst / rate) }
end
for i, b in ipairs(buckets) do
  redis.call('HSET', KEYS[i], 't', tostring(b.tokens - taken), 'at', tostring(b.at))
  redis.call('PEXPIRE', KEYS[i], b.life)
end
return taken
