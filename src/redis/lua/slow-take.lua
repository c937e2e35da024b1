-- Slow mode (§11.4) on every instance: a user's next send in a room is due at the time this key
-- holds. Each instance passes its own clock (as bucket-take.lua does); the key lapses with the slot.
--   KEYS[1] the user's slot in the room   ARGV[1] now (epoch ms)   ARGV[2] the room's slow mode (ms)
-- Returns 0 when the send may go (the slot is taken until now + ms), else the ms to wait.
local now, ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = tonumber(redis.call('GET', KEYS[1]))
if due and due > now then return math.ceil(due - now) end
redis.call('SET', KEYS[1], tostring(now + ms), 'PX', tostring(ms))
return 0
