-- Gives up a lock without committing (the regenerator failed).
-- KEYS[1] = L(K); ARGV[1] = the caller's lock token.
-- Returns 1 when the lock was the caller's and is now gone, else 0: a lock
-- taken since by someone else is left alone.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
