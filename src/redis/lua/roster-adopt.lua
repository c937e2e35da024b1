-- A survivor takes over one membership of a dead instance.
--   KEYS[1] here  KEYS[2] users  KEYS[3] the dead instance's rooms  KEYS[4] the survivor's rooms
--   ARGV[1] the dead "instanceId|userId"  ARGV[2] the survivor's  ARGV[3] userId  ARGV[4] room
-- Returns 1 when the survivor now holds it, in grace (the user is gone, unless it comes back), 2
-- when it held it already.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[3], ARGV[4], -1) <= 0 then redis.call('HDEL', KEYS[3], ARGV[4]) end
if redis.call('HSETNX', KEYS[1], ARGV[2], 'g') == 1 then
  redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
  return 1
end
redis.call('HINCRBY', KEYS[2], ARGV[3], -1)
return 2
