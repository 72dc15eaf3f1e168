-- Token bucket, taken and refilled in one atomic step (one script run).
--
-- KEYS[1]  the bucket (a hash: tokens, ts)
-- ARGV[1]  capacity: the most tokens the bucket holds (the burst)
-- ARGV[2]  refill rate in tokens per millisecond
-- ARGV[3]  tokens wanted: all or nothing
-- ARGV[4]  optional "now" in milliseconds (tests); otherwise the Redis clock,
--          one clock for every agent replica
--
-- Returns {granted (1 or 0), milliseconds until the wanted tokens are there,
--          whole tokens left}.
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local last = tonumber(state[2]) or now
if now > last then
    tokens = math.min(capacity, tokens + (now - last) * rate)
    last = now
end

local granted = 0
local wait = 0
if tokens >= wanted then
    tokens = tokens - wanted
    granted = 1
else
    wait = math.ceil((wanted - tokens) / rate)
end

redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(last))
-- A full bucket needs no state: let an idle account's key expire.
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate) + 60000)
return {granted, wait, math.floor(tokens)}
