-- A user stops being a member of a room through this instance. With `explicit`, its memberships
-- in grace through other instances go too: an explicit leave is the user's, at once (§10).
--   KEYS[1..5] as roster-add.lua  KEYS[6] the instance set
--   ARGV[1] "instanceId|userId"  ARGV[2] userId  ARGV[3] room  ARGV[4] channel  ARGV[5] the leave event
--   ARGV[6] "1" explicit, "0" not  ARGV[7] the instances' rooms prefix and ARGV[8] suffix
-- Returns 1 when that was the user's last instance in the room: the leave is published with it
-- (the instances whose grace went hear it, and end theirs).
local function unlist(instanceRooms)
  if redis.call('HINCRBY', instanceRooms, ARGV[3], -1) <= 0 then redis.call('HDEL', instanceRooms, ARGV[3]) end
  return redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local left = unlist(KEYS[4])
if ARGV[6] == '1' then
  for _, instance in ipairs(redis.call('SMEMBERS', KEYS[6])) do
    local field = instance .. '|' .. ARGV[2]
    if left > 0 and redis.call('HGET', KEYS[1], field) == 'g' then
      redis.call('HDEL', KEYS[1], field)
      left = unlist(ARGV[7] .. instance .. ARGV[8])
    end
  end
end
if left > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('HINCRBY', KEYS[5], ARGV[3], -1) <= 0 then redis.call('HDEL', KEYS[5], ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
