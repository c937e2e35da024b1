-- An instance holds a user as a server admin, or lets go of it: the user ranks admin on every
-- instance while one holds it (Roster.adminElsewhere). A survivor lets go of a dead instance's.
--   KEYS[1] the user's admin key (chat:admin:<userId>)  KEYS[2] the instance's admins
--   ARGV[1] instanceId  ARGV[2] userId  ARGV[3] "1" hold, "0" let go
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
else
  redis.call('SREM', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
return 0
