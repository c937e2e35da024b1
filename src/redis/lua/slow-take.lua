-- Slow mode (§11.2) on every instance: the key holds when the user last sent in the room (a send
-- it let through). Each instance passes its own clock (as bucket-take.lua does). The rule is
-- slowModeWait's (engine.ts): the wait is measured with the room's slow mode now.
--   KEYS[1] the user's record in the room   ARGV[1] now (epoch ms)   ARGV[2] the room's slow mode (ms)
--   ARGV[3] how long a send counts at most (ms), the key's life
-- Returns 0 when the send may go (it then counts), else the ms to wait.
local now, ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[1]))
if last and last + ms > now then return math.ceil(last + ms - now) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 0
