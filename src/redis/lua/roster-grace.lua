-- A user's membership of a room through this instance is in grace: none of its connections there
-- is in the room any more (roster-remove.lua ends it on an explicit leave elsewhere).
--   KEYS[1] here  ARGV[1] "instanceId|userId"
-- Returns 1 when the membership was there to mark.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'g')
return 1
