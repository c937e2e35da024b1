-- Trims one room's messages older than a cutoff (HISTORY_MAX_AGE_DAYS, for quiet rooms).
-- trim-lib.lua comes first.
--   KEYS[1] the room's history   KEYS[2] its dedup hash   KEYS[3] chat:held
--   ARGV[1] the room   ARGV[2] the cutoff
-- Returns how many messages went; the room's seq counter is left alone, so no seq is reused.
return trimAged(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]))
