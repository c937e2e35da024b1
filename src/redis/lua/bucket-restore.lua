-- After Redis lost its data, puts back a user's shared bucket as this instance last saw it (issue
-- 21: 2), so a reset hands nobody a fresh burst. A bucket made since (a frame after the reset)
-- keeps the lower of the two levels. The rule of bucket-take.lua: refilled up to `now`.
--   KEYS[1] the bucket   ARGV[1] burst   ARGV[2] tokens refilled per ms   ARGV[3] now (epoch ms)
--   ARGV[4] the tokens this instance saw   ARGV[5] when (epoch ms)
-- Returns 1 when the bucket was written, 0 when it would be full anyway (nothing kept).
local burst, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function level(tokens, at)
  if now > at then return math.min(burst, tokens + (now - at) * rate) end
  return tokens
end
local tokens = level(tonumber(ARGV[4]), tonumber(ARGV[5]))
local saved = redis.call('HMGET', KEYS[1], 't', 'at')
if saved[1] then tokens = math.min(tokens, level(tonumber(saved[1]), tonumber(saved[2]))) end
if tokens >= burst then return 0 end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate))
return 1
