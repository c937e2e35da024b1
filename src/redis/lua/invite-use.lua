-- Spends one use of an invite code, if it is for this room, unexpired and not used up.
--   KEYS[1] the invite (a hash: room, expiresAt, maxUses ("" for any number), uses)
--   ARGV[1] the room  ARGV[2] now (epoch ms)
-- Returns 1 when a use was spent.
local f = redis.call('HMGET', KEYS[1], 'room', 'expiresAt', 'maxUses', 'uses')
if not f[1] or f[1] ~= ARGV[1] or tonumber(f[2]) <= tonumber(ARGV[2]) then return 0 end
local uses = tonumber(f[4])
if f[3] ~= '' and uses >= tonumber(f[3]) then return 0 end
redis.call('HSET', KEYS[1], 'uses', tostring(uses + 1))
return 1
