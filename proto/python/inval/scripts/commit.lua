-- Commits a regenerated value, but only for the holder of the lock.
-- KEYS[1] = K (value), KEYS[2] = L(K) (lock), KEYS[3] = S(K) (stale copy);
-- all three hash to one slot (see proto/PROTOCOL.md, "Key contract").
-- ARGV[1] = the caller's lock token, ARGV[2] = the value,
-- ARGV[3] = the value's TTL in milliseconds (0: no TTL).
-- Returns 1 when K was written, 0 when the caller no longer holds the lock
-- (it expired, or an invalidation deleted it: the caller was fenced).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('DEL', KEYS[2], KEYS[3])
return 1
