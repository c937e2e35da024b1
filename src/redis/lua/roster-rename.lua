-- A member of a room shows under a new name, unless a later rename of the user won meanwhile
-- (its own event says so): the room hears the renames in the order they took effect.
--   KEYS[1] users  KEYS[2] names  KEYS[3] the user's name record (name-claim.lua)
--   ARGV[1] userId  ARGV[2] new name  ARGV[3] channel  ARGV[4] the rename event  ARGV[5] the name's version
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local version = redis.call('HGET', KEYS[3], 'v')
if version and tonumber(version) ~= tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
