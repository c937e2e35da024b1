-- A member of a room shows under a new name.
--   KEYS[1] users  KEYS[2] names
--   ARGV[1] userId  ARGV[2] new name  ARGV[3] channel  ARGV[4] the rename event
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
