-- Stores an invite code, unless its room holds the most live invites it may (unexpired, not used
-- up): counted in this step, so two creations at the bound cannot both pass.
--   KEYS[1] the invite (a hash: room, expiresAt, maxUses ("" for any number), uses)
--   KEYS[2] the room's live invites (a sorted set: code hashes by expiresAt; invite-use.lua takes out a used-up one)
--   ARGV[1] the code's hash  ARGV[2] the room  ARGV[3] expiresAt (epoch ms)  ARGV[4] maxUses ("" for any number)
--   ARGV[5] now (epoch ms)  ARGV[6] the most live invites a room holds
-- Returns 1 when stored, 0 when the room holds too many.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return 0 end
redis.call('HSET', KEYS[1], 'room', ARGV[2], 'expiresAt', ARGV[3], 'maxUses', ARGV[4], 'uses', '0')
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
-- The set goes with its last code.
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1
