-- Trims one quiet room by age (HISTORY_MAX_AGE_DAYS): its messages older than a cutoff go; a room
-- left with none leaves chat:held:newest too (trimAged takes it out of chat:held). trim-lib.lua comes first.
--   KEYS[1] the room's history   KEYS[2] its dedup hash   KEYS[3] chat:held   KEYS[4] chat:held:newest
--   ARGV[1] the room   ARGV[2] the cutoff
-- Returns how many messages went; the room's seq counter is left alone, so no seq is reused.
local n = trimAged(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]))
if n > 0 and not redis.call('ZSCORE', KEYS[3], ARGV[1]) then redis.call('ZREM', KEYS[4], ARGV[1]) end
return n
