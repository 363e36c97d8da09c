"""The Lua scripts of the Redis state store (run with EVALSHA, see redis.py).

Layout, compatible with Dapr's Redis store: one hash per key with fields
``data`` and ``version``; the etag is the version. A plain string key (written
by an older tool) reads as data without etag and is replaced on the next write.
"""

from __future__ import annotations

# KEYS[i]: the key of op i.  ARGV[1]: "1" all-or-nothing, "0" each op on its own.
# Then 5 ARGV per op: kind ("u" upsert, "d" delete), etag ("" none), first-write
# ("1"/"0"), data, ttl in ms ("0" none: PERSIST).  Answers one code per op,
# _ops.Outcome: 0 OK, 1 MISMATCH, 2 EXISTS, 3 MISSING; all-or-nothing stops at
# the first failure before anything is written.  Everything runs inside one
# script, so concurrent writers see either none or all of it.
WRITE = """
local atomic = ARGV[1] == "1"
local known = {}  -- key -> version as the checked ops leave it; false: absent
local function version(key)
  if known[key] == nil then
    local kind = redis.call("TYPE", key).ok
    if kind == "none" then
      known[key] = false
    elseif kind == "hash" then
      known[key] = tonumber(redis.call("HGET", key, "version")) or 0
    else
      known[key] = 0
    end
  end
  return known[key]
end
local function check(current, etag, first_write)
  if etag ~= "" then
    if current == false then return 3 end
    if tonumber(etag) ~= current then return 1 end
  elseif first_write == "1" and current ~= false then
    return 2
  end
  return 0
end
local function apply(key, kind, data, ttl)
  if kind == "d" then
    redis.call("DEL", key)
    return
  end
  local existing = redis.call("TYPE", key).ok
  if existing ~= "hash" and existing ~= "none" then redis.call("DEL", key) end
  redis.call("HSET", key, "data", data)
  redis.call("HINCRBY", key, "version", 1)
  if ttl == "0" then
    redis.call("PERSIST", key)
  else
    redis.call("PEXPIRE", key, ttl)
  end
end
local codes = {}
for i = 1, #KEYS do
  local at = 1 + (i - 1) * 5
  local key, kind = KEYS[i], ARGV[at + 1]
  local current = version(key)
  local code = check(current, ARGV[at + 2], ARGV[at + 3])
  codes[i] = code
  if code == 0 then
    if kind == "d" then known[key] = false else known[key] = (current or 0) + 1 end
    if not atomic then apply(key, kind, ARGV[at + 4], ARGV[at + 5]) end
  elseif atomic then
    return codes
  end
end
if atomic then
  for i = 1, #KEYS do
    local at = 1 + (i - 1) * 5
    apply(KEYS[i], ARGV[at + 1], ARGV[at + 4], ARGV[at + 5])
  end
end
return codes
"""

# Answers 3 values per key: data, version (false when absent), PTTL in ms.
READ = """
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local kind = redis.call("TYPE", key).ok
  local data, version = false, false
  if kind == "hash" then
    local fields = redis.call("HMGET", key, "data", "version")
    data, version = fields[1], fields[2]
  elseif kind == "string" then
    data = redis.call("GET", key)
  end
  out[#out + 1] = data
  out[#out + 1] = version
  out[#out + 1] = redis.call("PTTL", key)
end
return out
"""
