-- A user stops being a member of a room through this instance.
--   KEYS as roster-add.lua
--   ARGV[1] "instanceId|userId"  ARGV[2] userId  ARGV[3] room  ARGV[4] channel  ARGV[5] the leave event
-- Returns 1 when that was the user's last instance in the room: the leave is published with it.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[4], ARGV[3], -1) <= 0 then redis.call('HDEL', KEYS[4], ARGV[3]) end
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('HINCRBY', KEYS[5], ARGV[3], -1) <= 0 then redis.call('HDEL', KEYS[5], ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
