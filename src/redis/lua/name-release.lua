-- This instance lets go of a name it held for a user, by each of its keys.
--   KEYS the name's keys  ARGV[1] instanceId  ARGV[2] userId
for _, key in ipairs(KEYS) do redis.call('HDEL', key, ARGV[1] .. '|' .. ARGV[2]) end
return 0
