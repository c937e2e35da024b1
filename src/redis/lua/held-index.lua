-- Puts rooms of chat:held that chat:held:newest lacks (data an older instance wrote) into it, by
-- their newest entry's time. One written since by the scripts is left as it is. trim-lib.lua comes
-- first. A single Redis, as everywhere here: the rooms' logs are built from ARGV[1], not in KEYS.
--   KEYS[1] chat:held   KEYS[2] chat:held:newest
--   ARGV[1] the rooms' key prefix ("chat:room:")   ARGV[2], ARGV[3], … the rooms
-- Returns how many it put in.
local n = 0
for i = 2, #ARGV do
  local room = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], room) and not redis.call('ZSCORE', KEYS[2], room) then
    local newest = redis.call('ZRANGE', ARGV[1] .. room .. ':log', -1, -1)
    if newest[1] then
      redis.call('ZADD', KEYS[2], decoded(newest[1]).ts, room)
      n = n + 1
    end
  end
end
return n
