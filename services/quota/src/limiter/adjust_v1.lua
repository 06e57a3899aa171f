-- gateway_quota_adjust_v1: settles counters after a reservation or lease.
-- KEYS: one counter per adjustment, then the slot sets to leave.
-- ARGV: now, nonce (the slot holder, and a unique log member prefix),
-- adjustment count, then eight values per adjustment: algorithm (1 fixed,
-- 2 sliding window, 3 sliding log, 4 GCRA), limit, burst, delta, admitted
-- window start, current window start, current window end, admitted at.
-- A negative delta gives back what still counts; a positive one is counted
-- now, past the limit if need be (the usage happened). Times in microseconds.
local now = tonumber(ARGV[1])
local nonce = ARGV[2]
local n = tonumber(ARGV[3])
local LIFETIME = 4611686018427387904

local function expire(key, micros, window_end)
  if window_end < LIFETIME then
    redis.call('PEXPIRE', key, math.ceil(micros / 1000) + 1000)
  end
end

for i = 1, n do
  local base = 3 + (i - 1) * 8
  local algorithm = tonumber(ARGV[base + 1])
  local limit = tonumber(ARGV[base + 2])
  local burst = tonumber(ARGV[base + 3])
  local delta = tonumber(ARGV[base + 4])
  local admitted_start = tonumber(ARGV[base + 5])
  local window_start = tonumber(ARGV[base + 6])
  local window_end = tonumber(ARGV[base + 7])
  local admitted_at = tonumber(ARGV[base + 8])
  local length = window_end - window_start
  local key = KEYS[i]

  if algorithm == 1 then
    local stored = redis.call('HMGET', key, 's', 'u')
    local stored_start = tonumber(stored[1] or '-1')
    if delta < 0 then
      if stored_start == admitted_start then
        redis.call('HSET', key, 'u', math.max(tonumber(stored[2]) + delta, 0))
      end
    else
      local used = 0
      if stored_start == window_start then used = tonumber(stored[2]) end
      redis.call('HSET', key, 's', window_start, 'u', used + delta)
      expire(key, window_end - now, window_end)
    end
  elseif algorithm == 2 then
    local stored = redis.call('HMGET', key, 's', 'c', 'p')
    local stored_start = tonumber(stored[1] or '-1')
    if delta < 0 then
      if stored_start == admitted_start then
        redis.call('HSET', key, 'c', math.max(tonumber(stored[2]) + delta, 0))
      elseif stored_start == admitted_start + length then
        redis.call('HSET', key, 'p', math.max(tonumber(stored[3]) + delta, 0))
      end
    else
      local current, previous = 0, 0
      if stored_start == window_start then
        current, previous = tonumber(stored[2]), tonumber(stored[3])
      elseif stored_start == window_start - length then
        previous = tonumber(stored[2])
      end
      redis.call('HSET', key, 's', window_start, 'c', current + delta, 'p', previous)
      expire(key, window_end - now + length, 0)
    end
  elseif algorithm == 3 then
    if delta < 0 then
      -- A negative entry at the admission time leaves the log together
      -- with the amount it cancels.
      if admitted_at > now - length and redis.call('EXISTS', key) == 1 then
        redis.call('ZADD', key, admitted_at, nonce .. '-a' .. i .. ':' .. delta)
      end
    else
      redis.call('ZADD', key, now, nonce .. '-a' .. i .. ':' .. delta)
      expire(key, length, 0)
    end
  else
    local interval = length / limit
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    if delta < 0 then
      tat = math.max(tat + delta * interval, now)
    else
      tat = tat + delta * interval
    end
    if tat > now then
      redis.call('SET', key, string.format('%.6f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
    else
      redis.call('DEL', key)
    end
  end
end

for i = n + 1, #KEYS do
  redis.call('ZREM', KEYS[i], nonce)
end
return 1
