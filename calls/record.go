package calls

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Status is where a call is in its life.
type Status string

// The statuses of a call. Webhooks set Done and Failed when a call ends;
// the API may set any of them.
const (
	StatusInitiated  Status = "initiated"
	StatusInProgress Status = "in-progress"
	StatusDone       Status = "done"
	StatusFailed     Status = "failed"
)

// Valid reports whether s is one of the four statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusInitiated, StatusInProgress, StatusDone, StatusFailed:
		return true
	}
	return false
}

// Call is a call record as every instance sees it.
type Call struct {
	// CallSID is the application's own identifier and the record's key
	// (EL_…, a Twilio CA…, a SIP call id, or any other opaque string).
	CallSID string `json:"call_sid"`
	// ConversationID is ElevenLabs' identifier; empty until linked.
	ConversationID string `json:"conversation_id,omitempty"`
	Status         Status `json:"status"`
	// Org is the tenant the call belongs to; empty for none.
	Org       string    `json:"org,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Sentinel errors of the store.
var (
	// ErrNotFound: no call has that identifier.
	ErrNotFound = errors.New("call not found")
	// ErrConflict: the change would give an identifier or tenant to a
	// second call, or take it from the call that has it.
	ErrConflict = errors.New("call conflict")
	// ErrInvalid: an identifier or field is not acceptable.
	ErrInvalid = errors.New("invalid call")
)

// MaxIDLength bounds call identifiers, which become parts of Redis keys
// and channel names.
const MaxIDLength = 128

// ValidID reports whether id can identify a call: 1 to MaxIDLength bytes
// of valid UTF-8 without spaces or control characters. No format is
// assumed beyond that.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLength || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// Keys names what a call uses in Redis. The call_sid is a hash tag in
// every per-call key, so a call's record, counter and marks share a slot
// should the keys move to a Redis Cluster; the conversation_id link is
// keyed by the conversation and lives elsewhere.
type Keys struct{ Prefix string }

// Record is the key of the call's record, a hash.
func (k Keys) Record(sid string) string { return k.Prefix + ":call:{" + sid + "}" }

// Seq is the key of the call's event counter.
func (k Keys) Seq(sid string) string { return k.Prefix + ":call:{" + sid + "}:seq" }

// History is the key of the call's event stream.
func (k Keys) History(sid string) string { return k.Prefix + ":call:{" + sid + "}:events" }

func (k Keys) dedup(sid, mark string) string {
	return k.Prefix + ":call:{" + sid + "}:seen:" + mark
}
func (k Keys) conversation(conv string) string { return k.Prefix + ":conv:" + conv }

// ChannelBySID and ChannelByConversation name the Pub/Sub channels a
// call's events are published on, one per identifier.
func (k Keys) ChannelBySID(sid string) string { return k.Prefix + ":events:sid:" + sid }

// ChannelByConversation: see ChannelBySID.
func (k Keys) ChannelByConversation(conv string) string {
	return k.Prefix + ":events:conv:" + conv
}

// Store keeps call records in Redis.
type Store struct {
	rdb  redis.UniversalClient
	keys Keys
	ttl  time.Duration
	now  func() time.Time
}

// NewStore returns a Store whose records expire ttl after their last
// change (zero: never).
func NewStore(rdb redis.UniversalClient, keys Keys, ttl time.Duration) *Store {
	return &Store{rdb: rdb, keys: keys, ttl: ttl, now: time.Now}
}

// resolveScript finds a call by call_sid, else by conversation_id, in one
// round trip. KEYS[1] record by call_sid, KEYS[2] conversation link; ARGV[1], ARGV[2]:
// what goes before and after a call_sid in a record key.
var resolveScript = redis.NewScript(`
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then
  local sid = redis.call('GET', KEYS[2])
  if not sid then return {} end
  rec = redis.call('HGETALL', ARGV[1] .. sid .. ARGV[2])
end
return rec
`)

// Resolve returns the call that id identifies, as call_sid or as
// conversation_id. A call_sid match wins.
func (s *Store) Resolve(ctx context.Context, id string) (Call, error) {
	if !ValidID(id) {
		return Call{}, ErrNotFound
	}
	res, err := resolveScript.Run(ctx, s.rdb,
		[]string{s.keys.Record(id), s.keys.conversation(id)},
		s.keys.Prefix+":call:{", "}").StringSlice()
	if err != nil {
		return Call{}, fmt.Errorf("resolve call %q: %w", id, err)
	}
	if len(res) == 0 {
		return Call{}, ErrNotFound
	}
	return ParseRecord(res)
}

// Update is a change to a call. Empty fields are left as they are.
type Update struct {
	CallSID        string `json:"call_sid"`
	ConversationID string `json:"conversation_id"`
	Status         Status `json:"status"`
	Org            string `json:"org"`
}

func (u Update) validate() error {
	if !ValidID(u.CallSID) {
		return fmt.Errorf("%w: call_sid must be 1 to %d characters without spaces or control characters", ErrInvalid, MaxIDLength)
	}
	if u.ConversationID != "" && !ValidID(u.ConversationID) {
		return fmt.Errorf("%w: conversation_id must be 1 to %d characters without spaces or control characters", ErrInvalid, MaxIDLength)
	}
	if u.Status != "" && !u.Status.Valid() {
		return fmt.Errorf("%w: status must be one of initiated, in-progress, done, failed", ErrInvalid)
	}
	if u.Org != "" && !ValidID(u.Org) {
		return fmt.Errorf("%w: org must be 1 to %d characters without spaces or control characters", ErrInvalid, MaxIDLength)
	}
	return nil
}

// Saved is the outcome of Save.
type Saved struct {
	Call Call
	// Created: the call did not exist before.
	Created bool
	// StatusChanged: the status differs from the one before (or the call
	// was created).
	StatusChanged bool
	// Linked: the conversation_id was set by this change.
	Linked bool
}

// saveScript creates or updates a record atomically, and links its
// conversation_id. KEYS[1] record, KEYS[2] conversation link (optional).
// ARGV: call_sid, conversation_id, status, org, now, ttl ms, and the
// conversation link key without its id (to refresh the link's expiry).
// Replies {"conflict", what} or {created, status changed, linked, fields...}.
var saveScript = redis.NewScript(`
local sid, conv, status, org, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
if conv ~= '' then
  local owner = redis.call('GET', KEYS[2])
  if owner and owner ~= sid then return {'conflict', 'conversation_id belongs to call ' .. owner} end
end
local cur = redis.call('HMGET', KEYS[1], 'call_sid', 'conversation_id', 'status', 'org')
local created = not cur[1]
if not created then
  if conv ~= '' and cur[2] and cur[2] ~= '' and cur[2] ~= conv then
    return {'conflict', 'call is linked to another conversation_id'}
  end
  if org ~= '' and cur[4] and cur[4] ~= '' and cur[4] ~= org then
    return {'conflict', 'call belongs to another org'}
  end
end
local changed, statusChanged, linked = created, created, 0
if created then
  if status == '' then status = 'initiated' end
  redis.call('HSET', KEYS[1], 'call_sid', sid, 'status', status, 'created_at', now)
else
  if status ~= '' and status ~= cur[3] then
    redis.call('HSET', KEYS[1], 'status', status)
    changed, statusChanged = true, true
  end
end
if conv ~= '' and (created or not cur[2] or cur[2] == '') then
  redis.call('HSET', KEYS[1], 'conversation_id', conv)
  redis.call('SET', KEYS[2], sid)
  changed, linked = true, 1
end
if org ~= '' and (created or not cur[4] or cur[4] == '') then
  redis.call('HSET', KEYS[1], 'org', org)
  changed = true
end
if changed then redis.call('HSET', KEYS[1], 'updated_at', now) end
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  local c = redis.call('HGET', KEYS[1], 'conversation_id')
  if c and c ~= '' then redis.call('PEXPIRE', ARGV[7] .. c, ttl) end
end
local out = {created and 1 or 0, statusChanged and 1 or 0, linked}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
return out
`)

// Save creates the call u.CallSID or updates it with the non-empty fields
// of u. Saving the same update twice changes nothing the second time. A
// conversation_id or org, once set, cannot be changed (ErrConflict).
func (s *Store) Save(ctx context.Context, u Update) (Saved, error) {
	if err := u.validate(); err != nil {
		return Saved{}, err
	}
	keys := []string{s.keys.Record(u.CallSID)}
	if u.ConversationID != "" {
		keys = append(keys, s.keys.conversation(u.ConversationID))
	}
	now := s.now().UTC().Format(time.RFC3339Nano)
	res, err := saveScript.Run(ctx, s.rdb, keys,
		u.CallSID, u.ConversationID, string(u.Status), u.Org, now, s.ttl.Milliseconds(),
		s.keys.conversation("")).Slice()
	if err != nil {
		return Saved{}, fmt.Errorf("save call %q: %w", u.CallSID, err)
	}
	if len(res) == 2 {
		if kind, _ := res[0].(string); kind == "conflict" {
			msg, _ := res[1].(string)
			return Saved{}, fmt.Errorf("%w: %s", ErrConflict, msg)
		}
	}
	if len(res) < 3 {
		return Saved{}, fmt.Errorf("save call %q: unexpected reply %v", u.CallSID, res)
	}
	flag := func(v any) bool { n, _ := v.(int64); return n == 1 }
	fields := make([]string, 0, len(res)-3)
	for _, v := range res[3:] {
		str, _ := v.(string)
		fields = append(fields, str)
	}
	c, err := ParseRecord(fields)
	if err != nil {
		return Saved{}, err
	}
	return Saved{Call: c, Created: flag(res[0]), StatusChanged: flag(res[1]), Linked: flag(res[2])}, nil
}

// ParseRecord reads a call record from HGETALL's field, value pairs.
func ParseRecord(kv []string) (Call, error) {
	var c Call
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		switch kv[i] {
		case "call_sid":
			c.CallSID = v
		case "conversation_id":
			c.ConversationID = v
		case "status":
			c.Status = Status(v)
		case "org":
			c.Org = v
		case "created_at":
			c.CreatedAt, _ = time.Parse(time.RFC3339Nano, v)
		case "updated_at":
			c.UpdatedAt, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	if c.CallSID == "" {
		return Call{}, fmt.Errorf("call record without call_sid: %q", kv)
	}
	return c, nil
}
