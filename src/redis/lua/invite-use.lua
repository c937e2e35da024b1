-- Spends one use of an invite code, if it is for this room, unexpired and not used up.
--   KEYS[1] the invite (a hash: room, expiresAt, maxUses ("" for any number), uses)
--   KEYS[2] the room's live invites (invite-create.lua): a used-up code leaves it
--   ARGV[1] the room  ARGV[2] now (epoch ms)  ARGV[3] the code's hash
-- Returns 1 when a use was spent.
local f = redis.call('HMGET', KEYS[1], 'room', 'expiresAt', 'maxUses', 'uses')
if not f[1] or f[1] ~= ARGV[1] or tonumber(f[2]) <= tonumber(ARGV[2]) then return 0 end
local uses = tonumber(f[4])
if f[3] ~= '' and uses >= tonumber(f[3]) then return 0 end
redis.call('HSET', KEYS[1], 'uses', tostring(uses + 1))
if f[3] ~= '' and uses + 1 >= tonumber(f[3]) then redis.call('ZREM', KEYS[2], ARGV[3]) end
return 1
