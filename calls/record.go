package calls

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/internal/wire"
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
	// ErrLinking: another call is linking the conversation_id right now
	// (or an instance died doing so a moment ago): retry shortly.
	ErrLinking = errors.New("call linking in progress")
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

// Store keeps call records in Redis.
//
// Every script it runs touches keys of one slot, so it runs on a Redis
// Cluster as on one Redis. Linking a conversation_id to a call writes two
// keys in different slots, in two steps: the conversation's link, then the
// call's record (see Save).
type Store struct {
	rdb  redis.UniversalClient
	keys Keys
	ttl  time.Duration
	now  func() time.Time
	// publish is the command that publishes on a call's channel: PUBLISH,
	// or SPUBLISH in the cluster layout.
	publish string
}

// NewStore returns a Store whose records expire ttl after their last
// change. ttl must be positive: a conversation link left half made by an
// instance that died is taken over once it is older than linkGrace, which
// its expiry tells.
func NewStore(rdb redis.UniversalClient, keys Keys, ttl time.Duration) *Store {
	s := &Store{rdb: rdb, keys: keys, ttl: ttl, now: time.Now, publish: "PUBLISH"}
	if keys.Partitions != nil {
		s.publish = "SPUBLISH"
	}
	return s
}

// Resolve returns the call that id identifies, as call_sid or as
// conversation_id. A call_sid match wins.
func (s *Store) Resolve(ctx context.Context, id string) (Call, error) {
	if !ValidID(id) {
		return Call{}, ErrNotFound
	}
	pipe := s.rdb.Pipeline()
	byID := pipe.HGetAll(ctx, s.keys.Record(id))
	link := pipe.Get(ctx, s.keys.conversation(id))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Call{}, fmt.Errorf("resolve call %q: %w", id, err)
	}
	if len(byID.Val()) > 0 {
		return recordOf(byID.Val())
	}
	sid := link.Val()
	if sid == "" {
		return Call{}, ErrNotFound
	}
	kv, err := s.rdb.HGetAll(ctx, s.keys.Record(sid)).Result()
	if err != nil {
		return Call{}, fmt.Errorf("resolve call %q: %w", id, err)
	}
	if len(kv) == 0 {
		return Call{}, ErrNotFound
	}
	c, err := recordOf(kv)
	if err != nil {
		return Call{}, err
	}
	if c.ConversationID != id {
		// A link whose call does not point back: an instance died between
		// the two steps of linking. It is not a link.
		return Call{}, ErrNotFound
	}
	return c, nil
}

// Identity is what identifies a call and who may see it.
type Identity struct {
	CallSID, ConversationID, Org string
}

// identityFields are the fields of a record that Identify reads.
var identityFields = []string{"call_sid", "conversation_id", "org"}

// Identify returns who the call id identifies is, as Resolve finds it,
// doing the same Redis work whether id names a call, by either
// identifier, or nothing: two round trips, the same commands, replies of
// the same shape. It is for those who must not learn from timing whether
// a call exists.
func (s *Store) Identify(ctx context.Context, id string) (Identity, error) {
	if !ValidID(id) {
		return Identity{}, ErrNotFound
	}
	pipe := s.rdb.Pipeline()
	byID := pipe.HMGet(ctx, s.keys.Record(id), identityFields...)
	link := pipe.Get(ctx, s.keys.conversation(id))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Identity{}, fmt.Errorf("resolve call %q: %w", id, err)
	}
	sid := id
	if byID.Val()[0] == nil && link.Val() != "" {
		sid = link.Val()
	}
	vals, err := s.rdb.HMGet(ctx, s.keys.Record(sid), identityFields...).Result()
	if err != nil {
		return Identity{}, fmt.Errorf("resolve call %q: %w", id, err)
	}
	var who Identity
	for i, p := range []*string{&who.CallSID, &who.ConversationID, &who.Org} {
		*p, _ = vals[i].(string)
	}
	if who.CallSID == "" || sid != id && who.ConversationID != id {
		// No call; or a link whose call does not point back (an instance
		// died between the two steps of linking), which is not a link.
		return Identity{}, ErrNotFound
	}
	return who, nil
}

// Update is a change to a call. Empty fields are left as they are.
type Update struct {
	CallSID        string `json:"call_sid"`
	ConversationID string `json:"conversation_id"`
	Status         Status `json:"status"`
	Org            string `json:"org"`
	// existing: the change applies only to a call that exists
	// (ErrNotFound otherwise).
	existing bool
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

// linkGrace is how old a conversation link whose call does not point back
// must be before another call may take it over: older than any instance
// takes between the two steps of linking.
const linkGrace = 10 * time.Second

// claimScript links a conversation to a call, the first step of linking.
// KEYS[1] the conversation's link; ARGV: call_sid, ttl ms, and the
// call_sid of a link to take over (empty for none). Replies {'ok'}, or
// {'owner', call_sid, age ms} when another call has the link.
var claimScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if not owner or owner == ARGV[1] or owner == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {'ok'}
end
return {'owner', owner, tonumber(ARGV[2]) - redis.call('PTTL', KEYS[1])}
`)

// releaseScript undoes a claim: it deletes the link KEYS[1] if it names
// ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`)

// claim links conv to sid, or fails with ErrConflict when another call has
// it. A link whose call does not point back is taken over once it is
// older than linkGrace (an instance died between the two steps of
// linking); a younger one may still be completing: ErrLinking.
func (s *Store) claim(ctx context.Context, conv, sid string) error {
	key := s.keys.conversation(conv)
	takeover := ""
	for range 2 {
		res, err := claimScript.Run(ctx, s.rdb, []string{key}, sid, s.ttl.Milliseconds(), takeover).Slice()
		if err != nil {
			return fmt.Errorf("link conversation %q: %w", conv, err)
		}
		if len(res) != 3 {
			return nil
		}
		owner, _ := res[1].(string)
		age, _ := res[2].(int64)
		back, err := s.rdb.HGet(ctx, s.keys.Record(owner), "conversation_id").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("link conversation %q: %w", conv, err)
		}
		switch {
		case back == conv:
			return fmt.Errorf("%w: conversation_id belongs to call %s", ErrConflict, owner)
		case time.Duration(age)*time.Millisecond < linkGrace:
			return fmt.Errorf("%w: conversation_id is being linked to call %s", ErrLinking, owner)
		}
		takeover = owner
	}
	return fmt.Errorf("%w: conversation_id is being linked to another call", ErrLinking)
}

// saveScript creates or updates a record atomically. KEYS[1] record.
// ARGV: call_sid, conversation_id, conversation_id as JSON, status, org,
// now, ttl ms, whether the call must exist, the publish command and the
// call's channel and the notice's prefix (for the notice of an org set on
// an existing call, see wire.OrgNoticePrefix).
// Replies {'conflict', what}, {'norecord'} or {created, status changed,
// linked, fields...}.
var saveScript = redis.NewScript(`
local sid, conv, convJSON, status, org, now, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local cur = redis.call('HMGET', KEYS[1], 'call_sid', 'conversation_id', 'status', 'org')
local created = not cur[1]
if created and ARGV[8] == '1' then return {'norecord'} end
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
elseif status ~= '' and status ~= cur[3] then
  redis.call('HSET', KEYS[1], 'status', status)
  changed, statusChanged = true, true
end
if conv ~= '' and (created or not cur[2] or cur[2] == '') then
  redis.call('HSET', KEYS[1], 'conversation_id', conv, 'conversation_id_json', convJSON)
  changed, linked = true, 1
end
local orgSet = false
if org ~= '' and (created or not cur[4] or cur[4] == '') then
  redis.call('HSET', KEYS[1], 'org', org)
  changed, orgSet = true, not created
end
if changed then redis.call('HSET', KEYS[1], 'updated_at', now) end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
if orgSet then
  redis.call(ARGV[9], ARGV[10], ARGV[11] .. cjson.encode(org) .. '}')
end
local out = {created and 1 or 0, statusChanged and 1 or 0, linked}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
return out
`)

// Save creates the call u.CallSID or updates it with the non-empty fields
// of u. Saving the same update twice changes nothing the second time. A
// conversation_id or org, once set, cannot be changed (ErrConflict).
//
// A conversation_id is linked in two steps, each atomic: the
// conversation's link first, then the call's record. Lookups by
// conversation_id accept a link only when the call points back, so an
// instance that dies between the steps leaves no link that works; the
// half-made link is taken over by the next call linked to that
// conversation once it is older than 10 seconds, and completed by a retry
// for the same call at once. Setting an org on an existing call tells the
// instances that follow it, on its channel, in the same step.
func (s *Store) Save(ctx context.Context, u Update) (Saved, error) {
	if err := u.validate(); err != nil {
		return Saved{}, err
	}
	if u.ConversationID != "" {
		if err := s.claim(ctx, u.ConversationID, u.CallSID); err != nil {
			return Saved{}, err
		}
	}
	saved, err := s.saveRecord(ctx, u)
	if err != nil && u.ConversationID != "" && !saved.Linked {
		// The record refused the link (or the call does not exist): the
		// first step is undone, unless the call already had the link.
		if rerr := releaseScript.Run(context.WithoutCancel(ctx), s.rdb,
			[]string{s.keys.conversation(u.ConversationID)}, u.CallSID).Err(); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	if err != nil {
		return Saved{}, err
	}
	if conv := saved.Call.ConversationID; conv != "" && conv != u.ConversationID && s.ttl > 0 {
		// The link lives as long as the record; the claim set it above.
		if err := s.rdb.PExpire(ctx, s.keys.conversation(conv), s.ttl).Err(); err != nil {
			return Saved{}, fmt.Errorf("save call %q: %w", u.CallSID, err)
		}
	}
	return saved, nil
}

func (s *Store) saveRecord(ctx context.Context, u Update) (Saved, error) {
	now := s.now().UTC().Format(time.RFC3339Nano)
	var convJSON []byte
	if u.ConversationID != "" {
		convJSON = wire.AppendString(nil, u.ConversationID)
	}
	existing := "0"
	if u.existing {
		existing = "1"
	}
	res, err := saveScript.Run(ctx, s.rdb, []string{s.keys.Record(u.CallSID)},
		u.CallSID, u.ConversationID, convJSON, string(u.Status), u.Org, now, s.ttl.Milliseconds(),
		existing, s.publish, s.keys.ChannelBySID(u.CallSID), wire.OrgNoticePrefix).Slice()
	if err != nil {
		return Saved{}, fmt.Errorf("save call %q: %w", u.CallSID, err)
	}
	if kind, _ := res[0].(string); kind == "conflict" && len(res) == 2 {
		msg, _ := res[1].(string)
		return Saved{}, fmt.Errorf("%w: %s", ErrConflict, msg)
	} else if kind == "norecord" {
		return Saved{}, ErrNotFound
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

// recordOf reads a call record from HGETALL's map.
func recordOf(m map[string]string) (Call, error) {
	kv := make([]string, 0, 2*len(m))
	for k, v := range m {
		kv = append(kv, k, v)
	}
	return ParseRecord(kv)
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
