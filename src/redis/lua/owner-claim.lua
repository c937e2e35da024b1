-- Makes a user the owner of a room that has none and holds nothing (no retained message nor
-- event): the first joiner of a new room (§11.2). One step, so two first joiners on two
-- instances cannot both own it.
--   KEYS[1] the room's owner  KEYS[2] its roles hash  KEYS[3] its history
--   ARGV[1] the user id  ARGV[2] its role entry as JSON
-- Returns 1 when the user now owns the room.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZCARD', KEYS[3]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
