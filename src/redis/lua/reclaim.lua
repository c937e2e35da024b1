-- Frees a place among the rooms that hold history (MAX_ROOMS, ROOM_RECLAIM_DAYS): drops the
-- history of the room idle longest (its newest entry older than the cutoff, nobody in it on any
-- instance), with its dedup keys. Its seq counter, roles and settings stay. trim-lib.lua comes first.
--   KEYS[1] chat:held   KEYS[2] chat:active   KEYS[3] chat:recent   KEYS[4] chat:held:newest
--   ARGV[1] the cutoff (epoch ms)   ARGV[2] how many rooms to look at, idle longest first
--   ARGV[3] the rooms' key prefix ("chat:room:")
-- Returns the room, or false when none is idle enough.
local cutoff = tonumber(ARGV[1])
-- The index's score is the room's newest entry's time; its log says for sure (an older
-- instance's append leaves the score behind, its reclaim or trim leaves a room with no history).
for _, room in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  local log = ARGV[3] .. room .. ':log'
  local newest = redis.call('ZRANGE', log, -1, -1)
  local ts = newest[1] and decoded(newest[1]).ts
  if not ts then
    redis.call('ZREM', KEYS[4], room)
  elseif ts >= cutoff then
    redis.call('ZADD', KEYS[4], ts, room)
  elseif redis.call('HEXISTS', KEYS[2], room) == 0 then
    redis.call('DEL', log, ARGV[3] .. room .. ':ids')
    redis.call('ZREM', KEYS[1], room)
    redis.call('ZREM', KEYS[3], room)
    redis.call('ZREM', KEYS[4], room)
    return room
  end
end
return false
