-- gateway_quota_claim_v1: takes ownership of settling (or expiring) one
-- reservation or lease record, exactly once across replicas.
-- KEYS[1]: the record, a hash {s = o(pen) | x (expired) | d(one), b = payload}.
-- ARGV: mode ('settle' or 'expire'), tombstone ttl ms.
-- Returns {state found, payload}: 'o' or 'x' with the payload when this
-- call claimed it, 'd' when already settled, 'n' when unknown.
local key = KEYS[1]
local mode = ARGV[1]
local tombstone_ttl = tonumber(ARGV[2])
local stored = redis.call('HMGET', key, 's', 'b')
local state = stored[1]
if not state then
  return {'n', ''}
end
if state == 'd' then
  return {'d', ''}
end
if mode == 'settle' then
  redis.call('HSET', key, 's', 'd')
  redis.call('HDEL', key, 'b')
  redis.call('PEXPIRE', key, tombstone_ttl)
  return {state, stored[2] or ''}
end
if state == 'o' then
  -- Expired: the payload stays, so a late release can still count usage.
  redis.call('HSET', key, 's', 'x')
  redis.call('PEXPIRE', key, tombstone_ttl)
  return {'o', stored[2] or ''}
end
return {'x', ''}
