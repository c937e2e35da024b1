-- This instance lets go of a name it held for a user.
--   KEYS[1] the name  ARGV[1] instanceId  ARGV[2] userId
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
