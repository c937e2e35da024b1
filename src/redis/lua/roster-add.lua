-- A user becomes a live member of a room through this instance, or is live there again (back
-- from grace: its entry, if still there, is marked live).
--   KEYS[1] here  KEYS[2] users  KEYS[3] names  KEYS[4] the instance's rooms  KEYS[5] chat:active
--   ARGV[1] "instanceId|userId"  ARGV[2] userId  ARGV[3] name  ARGV[4] room  ARGV[5] channel  ARGV[6] the join event
-- Returns 1 when the user was in the room through no instance: the join is published with it,
-- in order with the room's messages.
if redis.call('HSETNX', KEYS[1], ARGV[1], '1') == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], '1')
  return 0
end
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) > 1 then return 0 end
redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
