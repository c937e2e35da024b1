-- Frees a place among the rooms that hold history (MAX_ROOMS, ROOM_RECLAIM_DAYS): drops the
-- history of the room idle longest (its newest entry older than the cutoff, nobody in it on any
-- instance), with its dedup keys. Its seq counter, roles and settings stay. trim-lib.lua comes first.
--   KEYS[1] chat:held   KEYS[2] chat:active   KEYS[3] chat:recent
--   ARGV[1] the cutoff (epoch ms)   ARGV[2] how many rooms to look at, oldest first
--   ARGV[3] the rooms' key prefix ("chat:room:")
-- Returns the room, or false when none is idle enough.
local cutoff = tonumber(ARGV[1])
local best, bestTs
-- chat:held is scored by each room's oldest entry, so an idle room is among the first.
for _, room in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  if redis.call('HEXISTS', KEYS[2], room) == 0 then
    local newest = redis.call('ZRANGE', ARGV[3] .. room .. ':log', -1, -1)
    local ts = newest[1] and decoded(newest[1]).ts
    if ts and ts < cutoff and (not bestTs or ts < bestTs) then best, bestTs = room, ts end
  end
end
if not best then return false end
redis.call('DEL', ARGV[3] .. best .. ':log', ARGV[3] .. best .. ':ids')
redis.call('ZREM', KEYS[1], best)
redis.call('ZREM', KEYS[3], best)
return best
