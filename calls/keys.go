package calls

import "github.com/callgate/callgate/internal/slots"

// Keys names what a call uses in Redis, with P the prefix:
//
//	P:call:<tag>              the record (a hash), with the event position:
//	                          epoch, last event_id, Redis process (g, n, rid)
//	P:call:<tag>:events       the stored events (a stream, ids <epoch>-<event_id>)
//	P:call:<tag>:seen:<mark>  a remembered delivery
//	P:conv:<conversation_id>  the call_sid a conversation is linked to
//
// On one Redis (or Sentinel) the tag is {<call_sid>}: the call_sid is the
// hash tag. On a Redis Cluster it is the hash tag of the call_sid's
// partition followed by the call_sid, {<partition>}<call_sid>: a call's
// keys still share a slot, and the calls of a partition share one, so an
// instance follows them on as many connections as there are partitions.
// The conversation link is a key of its own, in its own slot: linking
// writes it and the record in two steps (see Store.Save).
type Keys struct {
	Prefix string
	// Partitions, when set, selects the cluster layout.
	Partitions *slots.Partitions
}

func (k Keys) tag(sid string) string {
	if k.Partitions == nil {
		return "{" + sid + "}"
	}
	return k.Partitions.Tag(sid) + sid
}

// Record is the key of the call's record, a hash. It holds the call's
// event position too (pubsub.Message.Seq), so that publishing an event
// reads both at once.
func (k Keys) Record(sid string) string { return k.Prefix + ":call:" + k.tag(sid) }

// History is the key of the call's event stream.
func (k Keys) History(sid string) string { return k.Prefix + ":call:" + k.tag(sid) + ":events" }

func (k Keys) dedup(sid, mark string) string {
	return k.Prefix + ":call:" + k.tag(sid) + ":seen:" + mark
}

func (k Keys) conversation(conv string) string { return k.Prefix + ":conv:" + conv }

// ChannelBySID names the Pub/Sub channel a call's events are published on
// and instances follow: P:events:sid:<call_sid> on one Redis, the shard
// channel P:events:sid:<tag> on a cluster (in the call's slot).
func (k Keys) ChannelBySID(sid string) string {
	if k.Partitions == nil {
		return k.Prefix + ":events:sid:" + sid
	}
	return k.Prefix + ":events:sid:" + k.tag(sid)
}

// ChannelByConversation names the channel a call's events are published on
// a second time, by conversation_id, for consumers that follow calls in
// Redis directly: P:events:conv:<conversation_id> on one Redis, the shard
// channel P:events:conv:{<partition>}<conversation_id> on a cluster.
func (k Keys) ChannelByConversation(conv string) string { return k.convChannels() + k.convTag(conv) }

func (k Keys) convChannels() string { return k.Prefix + ":events:conv:" }

func (k Keys) convTag(conv string) string {
	if k.Partitions == nil {
		return conv
	}
	return k.Partitions.Tag(conv) + conv
}
