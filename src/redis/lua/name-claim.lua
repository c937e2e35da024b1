-- A name is held per instance and user (field "instanceId|userId"), by each of its look-alike
-- keys: one user on several instances holds it until the last lets go; a dead instance's hold
-- ends with the key's expiry. A guest's claim is exclusive: it fails when another user holds a
-- key. A member's or bot's never fails (their names come from their tokens) but still holds the
-- keys, so that no guest takes the name meanwhile.
--   KEYS the name's keys (chat:name:<key>)
--   ARGV[1] instanceId  ARGV[2] userId  ARGV[3] expiry (ms)  ARGV[4] "1" exclusive (a guest), "0" not
-- Returns 0 if another user holds a key of an exclusive claim, else 1.
local field = ARGV[1] .. '|' .. ARGV[2]
if ARGV[4] == '1' then
  for _, key in ipairs(KEYS) do
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if string.sub(f, string.find(f, '|', 1, true) + 1) ~= ARGV[2] then return 0 end
    end
  end
end
for _, key in ipairs(KEYS) do
  redis.call('HSET', key, field, '1')
  redis.call('PEXPIRE', key, ARGV[3])
end
return 1
