-- Soft invalidation of one value key, run by the worker of K's node.
-- KEYS[1] = K, KEYS[2] = L(K), KEYS[3] = S(K); ARGV[1] = grace TTL in ms.
-- Moves K to S(K) with the grace TTL (replacing an older stale copy) and
-- deletes L(K), which fences any regeneration in flight. When K is absent
-- only the lock is deleted and an existing stale copy is left as it is.
-- Returns 1 when K was moved, 0 when K was absent.
local moved = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[3])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[1]))
  moved = 1
end
redis.call('DEL', KEYS[2])
return moved
