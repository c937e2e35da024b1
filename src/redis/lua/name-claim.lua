-- A name is held per instance (field instanceId -> userId), so one user on several instances
-- holds it until the last lets go; a dead instance's hold ends with the key's expiry.
--   KEYS[1] the name  ARGV[1] instanceId  ARGV[2] userId  ARGV[3] expiry (ms)
-- Returns 0 if another user holds it.
for _, holder in ipairs(redis.call('HVALS', KEYS[1])) do
  if holder ~= ARGV[2] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
