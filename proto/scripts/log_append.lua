-- Appends one batch entry to a log shard, run by the publisher on the node
-- that owns the shard's home slot (see proto/PROTOCOL.md, "The entry and
-- the per-shard script").
-- KEYS[1] = the shard's stream; ARGV[1] = max-log-len (MAXLEN ~),
-- ARGV[2] = the entry's payload, ARGV[3] = the shard's hint channel.
-- The consumer group 'inval' (INV_LOG_GROUP) is created with the stream, in
-- the same atomic step as its first entry, so no entry precedes the cursor
-- that will read it. The hint carries only the new id.
-- Returns the new entry's id.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], 'inval', '0', 'MKSTREAM')
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'p', ARGV[2])
redis.call('SPUBLISH', ARGV[3], id)
return id
