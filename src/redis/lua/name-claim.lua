-- Holds a user's name on every instance, by each of its look-alike keys, and keeps the one record
-- of what the user is called: a rename is one step here, claim and release together, so two
-- renames of one user on two instances end with one name (the later one), never two (issue 21: 4).
-- A key's fields are "instanceId|userId" -> since (when the user took the name): one user on
-- several instances holds it until the last lets go; a dead instance's hold lapses with the key.
-- A guest's claim is exclusive: another user holding a key refuses it. A hello's claim is refused
-- outright; a hold (an instance keeping, or registering again after Redis lost its data, what
-- it held) goes to whoever took the name first (ties: the smaller user id), and the other
-- holders are ousted and told (issue 21: 2). A member's or bot's claim is never refused.
--   KEYS[1] the user's name record (name, keys, v)   KEYS[2..] the name's keys (chat:name:<key>)
--   ARGV[1] instanceId  ARGV[2] userId  ARGV[3] expiry (ms)  ARGV[4] "1" exclusive (a guest), "0" not
--   ARGV[5] "hello" or "hold"  ARGV[6] since (ms)  ARGV[7] the name  ARGV[8] the version the
--   instance knows (a hold's)  ARGV[9] the server channel  ARGV[10] the name records' prefix and
--   ARGV[11] their suffix ("chat:user:", ":name")
-- Returns {0} refused; {1, name, version} held (a rename published as a server event); {2, name,
-- version} a hold of a name the user no longer has (it was renamed elsewhere: take this one).
local me, hold = ARGV[2], ARGV[5] == 'hold'
local field = ARGV[1] .. '|' .. me
local since = tonumber(ARGV[6])
local function userOf(f) return string.sub(f, string.find(f, '|', 1, true) + 1) end
local current = redis.call('HMGET', KEYS[1], 'name', 'keys', 'v')
local version = tonumber(current[3]) or 0
local wanted, keys = {}, {}
for i = 2, #KEYS do
  wanted[KEYS[i]] = true
  keys[#keys + 1] = KEYS[i]
end
local joined = table.concat(keys, '\n')
local renaming = current[1] and current[2] ~= joined
if hold and renaming then return {2, current[1], version} end
local ousted = {}
if ARGV[4] == '1' then
  for i = 2, #KEYS do
    local fields = redis.call('HGETALL', KEYS[i])
    for j = 1, #fields, 2 do
      local user = userOf(fields[j])
      if user ~= me then
        if not hold then return {0} end
        local held = tonumber(fields[j + 1]) or 0
        if held < since or (held == since and user < me) then return {0} end
        ousted[user] = true
      end
    end
  end
end
-- The ousted lose every hold of these keys, and their record; their instances hear it.
for user in pairs(ousted) do
  for i = 2, #KEYS do
    for _, f in ipairs(redis.call('HKEYS', KEYS[i])) do
      if userOf(f) == user then redis.call('HDEL', KEYS[i], f) end
    end
  end
  redis.call('DEL', ARGV[10] .. user .. ARGV[11])
  redis.call('PUBLISH', ARGV[9], cjson.encode({ instance = '', type = 'name_lost', userId = user, name = ARGV[7] }))
end
-- A rename moves every instance's hold of the old name to the new one: nobody keeps the old one.
local moved = {}
if renaming then
  for old in string.gmatch(current[2], '[^\n]+') do
    if not wanted[old] then
      for _, f in ipairs(redis.call('HKEYS', old)) do
        if userOf(f) == me then
          moved[f] = true
          redis.call('HDEL', old, f)
        end
      end
    end
  end
end
for i = 2, #KEYS do
  for f in pairs(moved) do redis.call('HSET', KEYS[i], f, ARGV[6]) end
  redis.call('HSET', KEYS[i], field, ARGV[6])
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
end
if renaming then
  version = version + 1
elseif not current[1] then
  version = math.max(tonumber(ARGV[8]) or 0, version, 1)
end
redis.call('HSET', KEYS[1], 'name', ARGV[7], 'keys', joined, 'v', version)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if renaming then
  redis.call('PUBLISH', ARGV[9], cjson.encode({ instance = ARGV[1], type = 'rename', userId = me, name = ARGV[7], version = version }))
end
return {1, ARGV[7], version}
