-- The publish step: checks, numbers, records, deduplicates and publishes
-- one message (and the message announcing a transition, just before it).
-- Publish and publishStep in publish.go say what it does and list KEYS and
-- ARGV.
--
-- This text is run two ways. Loaded as a Redis function library, what it
-- makes outside the step's own function lives as long as the library: the
-- helpers, the globals bound below and the run_id runID reads. Run as a
-- script (EVAL), all of it is made again, and INFO read, at each step.
-- Nothing else differs.
--
-- Redis runs Lua slowly, and its cost per step is what bounds a whole
-- deployment on one shard, so the step is written for it: six commands in
-- the usual case (HMGET, SET, XADD, HSET and one PUBLISH per channel);
-- the small numbers it is given read in one call (string.byte) rather
-- than parsed one by one (tonumber goes through strtod); each number
-- formatted once; no table made that Redis does not make for it; globals
-- read once (see bind).

-- The globals the step uses; nil until bind. A library may not read
-- globals while it loads, so they are bound at its first step.
local call, pcall, errorReply, tonum, typ, byte, find, sub, match, format, floor, max, unpk, encode

local function bind()
  call, pcall, errorReply = redis.call, redis.pcall, redis.error_reply
  tonum, typ, unpk, encode = tonumber, type, unpack, cjson.encode
  byte, find, sub, match, format = string.byte, string.find, string.sub, string.match, string.format
  floor, max = math.floor, math.max
end

local me -- this Redis process's run_id, or '' when INFO is refused

-- runID returns the run_id of the Redis process running the step. A
-- function library is loaded anew by every process that runs it (at
-- start, when a replica is promoted, when a node first gets a slot), so
-- what it remembers is always its own process's.
local function runID()
  if not me then
    me = ''
    local info = pcall('INFO', 'server')
    if typ(info) == 'string' then
      local at = find(info, 'run_id:', 1, true)
      if at then me = sub(info, at + 7, at + 46) end
    end
  end
  return me
end

local function num(x) return format('%d', x) end

-- top returns the epoch (a string) and number of the history's last
-- entry, or nil.
local function top(hist)
  local e = call('XREVRANGE', hist, '+', '-', 'COUNT', 1)
  if #e == 0 then return nil end
  local a, b = match(e[1][1], '^(%d+)-(%d+)$')
  return a, tonum(b)
end

-- now returns Redis's clock in milliseconds: the number of a new epoch.
local function now()
  local t = call('TIME')
  return tonum(t[1]) * 1000 + floor(tonum(t[2]) / 1000)
end

-- entries returns the step's history entries at epoch g (a string) after
-- number n: the announcing message's and its id when pre, then the
-- message's, its id and its number as a string. The four parts of each
-- payload start at ARGV[9] and ARGV[t0 + 3]; field goes before the last.
local function entries(ARGV, t0, pre, g, n, field)
  local announce, aid, s = nil, nil, n + 1
  if pre then
    local as = num(s)
    aid = g .. '-' .. as
    announce = ARGV[t0 + 3] .. as .. ARGV[t0 + 4] .. g .. ARGV[t0 + 5] .. field .. ARGV[t0 + 6]
    s = s + 1
  end
  local ms = num(s)
  return announce, aid, ARGV[9] .. ms .. ARGV[10] .. g .. ARGV[11] .. field .. ARGV[12], g .. '-' .. ms, ms
end

-- fields appends the values of the message's Fields, nF of them from
-- got[o + 1], to the reply out (false for a missing field).
local function fields(out, got, o, nF)
  local at = #out
  for j = 1, nF do out[at + j] = got[o + j] or false end
  return out
end

-- add appends payload to the history as entry id; it returns the error,
-- if XADD refused it.
local function add(hist, maxlen, id, payload)
  local r = pcall('XADD', hist, 'MAXLEN', '~', maxlen, id, 'p', payload)
  if typ(r) == 'table' and r.err then return r.err end
  return nil
end

local function publish(KEYS, ARGV)
  if not call then bind() end
  local hd, hr, hw, hx, nc, nr, iT, iF, iRaw, iE, nE, nS, nF, hf, tf = byte(ARGV[1], 1, 15)
  local pos, hist, dedup, rec = KEYS[1], KEYS[2], nil, nil
  local k = 3
  if hd == 1 then dedup, k = KEYS[3], 4 end
  if hr == 2 then rec = pos elseif hr == 1 then rec = KEYS[k] end
  local r0 = 15 + nc -- the fields to read: ARGV[r0 .. e0 - 1]
  local e0 = r0 + nr -- the expected values: ARGV[e0 .. t0 - 1]
  local t0 = e0 + nE -- the transition, when iT > 0

  -- The record and, in it or apart, the position: one read each. The
  -- record's fields are got[o + i] for the i-th field to read.
  local got, g, n, rid, x, o
  if hr == 2 then
    got, o = call('HMGET', rec, 'g', 'n', 'rid', 'x', unpk(ARGV, r0, e0 - 1)), 4
  elseif rec then
    got, o = call('HMGET', rec, unpk(ARGV, r0, e0 - 1)), 0
  end
  if rec then
    if not got[o + 1] then return {'norecord'} end
    for j = 0, nE - 1 do
      if (got[o + iE + j] or '') ~= ARGV[e0 + j] then return fields({'stale'}, got, o, nF) end
    end
  end
  if hr == 2 then
    g, n, rid, x = got[1], got[2], got[3], got[4]
  else
    local p = call('HMGET', pos, 'g', 'n', 'rid', 'x')
    g, n, rid, x = p[1], p[2], p[3], p[4]
  end
  n = tonum(n)
  local mine = runID()
  local steady = g and n and rid == mine
  if not g or not n then
    g, n = top(hist)
    if not g then g, n = num(now()), 0 end
  elseif not steady and mine ~= '' and rid then
    g, n = num(max(now(), tonum(g) + 1)), 0
  end

  local pre = iT > 0 and got[o + iT] == ARGV[t0]
  -- Sent with its check only, the transition is asked for in full.
  if pre and tf == 0 then return {'transition'} end
  local count = pre and 2 or 1
  local fValue, fJSON, field = '', '', ''
  if iF > 0 then
    fValue = got[o + iF] or ''
    if iRaw > 0 then fJSON = got[o + iRaw] or '' end
    if fJSON == '' and fValue ~= '' then fJSON = encode(fValue) end
    if fJSON ~= '' then field = ARGV[7] .. fJSON end
  end
  local announce, aid, main, id, ms = entries(ARGV, t0, pre, g, n, field)

  if dedup then
    -- The mark is written before the history, and taken back below if
    -- the history refuses the entries: the step is atomic, so nothing
    -- sees it in between.
    local prev = call('SET', dedup, id, 'NX', 'GET', 'PX', ARGV[4])
    if prev then
      if hw == 1 then
        -- A write of this connection's, so that the WAIT that follows
        -- waits for the first publication's writes too, whichever
        -- connection made them: the same expiry, set again.
        call('PEXPIRE', dedup, call('PTTL', dedup))
      end
      return fields({'dup', prev}, got, o, nF)
    end
  end

  -- The history's entries. When it refuses them (its last entry is ahead
  -- of the position, which was lost or reset), numbering goes on from its
  -- last entry, in its epoch.
  local err = (pre and add(hist, ARGV[5], aid, announce)) or add(hist, ARGV[5], id, main)
  if err then
    local tg, tn = top(hist)
    if tg then
      g, n, steady = tg, tn, false
      announce, aid, main, id, ms = entries(ARGV, t0, pre, g, n, field)
      err = (pre and add(hist, ARGV[5], aid, announce)) or add(hist, ARGV[5], id, main)
      if not err and dedup then call('SET', dedup, id, 'XX', 'KEEPTTL') end
    end
    if err then
      if dedup then call('DEL', dedup) end
      return errorReply(err)
    end
  end
  n = n + count

  -- Expiries: set when the sequence starts or restarts, when asked, and
  -- when they were last set at least ARGV[14] ms ago by the publishers'
  -- clock (ARGV[13] is now; x in the position, when they were last set):
  -- so every key outlives the last message by its TTL less that interval,
  -- and most steps write no expiry. A clock behind x sets them too.
  local renew = false
  if ARGV[14] ~= '0' then
    local t, last = tonum(ARGV[13]), tonum(x)
    renew = not steady or hx == 1 or not last or last > t or t - last >= tonum(ARGV[14])
  end

  -- The position, and the transition's change when it is in the same hash.
  if steady and not pre and not renew then
    call('HSET', pos, 'n', ms)
  else
    local set = {'n', ms}
    if renew then set[3], set[4] = 'x', ARGV[13] end
    if not steady then set[#set + 1], set[#set + 2], set[#set + 3], set[#set + 4] = 'g', g, 'rid', mine end
    if pre then
      local change = {ARGV[r0 + iT - 1], ARGV[t0 + 1]}
      for j = 1, 2 * nS do change[2 + j] = ARGV[t0 + 6 + j] end
      if hr == 2 then
        for j = 1, #change do set[#set + 1] = change[j] end
      else
        call('HSET', rec, unpk(change))
      end
      if ARGV[t0 + 2] ~= '0' then call('PEXPIRE', rec, ARGV[t0 + 2]) end
      -- What the step returns is the record after the change.
      for j = 1, #change, 2 do
        for f = 1, nF do
          if ARGV[r0 + f - 1] == change[j] then got[o + f] = change[j + 1] end
        end
      end
    end
    call('HSET', pos, unpk(set))
  end

  if renew then
    if ARGV[3] ~= '0' and not (pre and hr == 2 and ARGV[t0 + 2] == ARGV[3]) then
      call('PEXPIRE', pos, ARGV[3])
    end
    if ARGV[6] ~= '0' then call('PEXPIRE', hist, ARGV[6]) end
  end

  local pub, c1 = ARGV[2], 14 + nc
  local fch = nil
  if ARGV[8] ~= '' and fValue ~= '' then fch = ARGV[8] .. fValue end
  if announce then
    for j = 15, c1 do call(pub, ARGV[j], announce) end
    if fch then call(pub, fch, announce) end
  end
  for j = 15, c1 do call(pub, ARGV[j], main) end
  if fch then call(pub, fch, main) end
  local out = fields({'ok', g, ms, pre and 1 or 0}, got, o, nF)
  if hf == 1 then out[#out + 1], out[#out + 2] = fJSON, fValue end
  return out
end
