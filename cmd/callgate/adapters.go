package main

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/callgate/callgate/auth"
	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/pubsub"
	"github.com/callgate/callgate/topics"
)

// resolver adapts the call store to what the gateway needs: the same
// Redis work whether a call exists or not.
func resolver(store *calls.Store, keys calls.Keys) gateway.Resolver {
	return gateway.ResolverFunc(func(ctx context.Context, id string) (gateway.Target, error) {
		c, err := store.Identify(ctx, id)
		if errors.Is(err, calls.ErrNotFound) {
			return gateway.Target{}, gateway.ErrNotFound
		}
		if err != nil {
			return gateway.Target{}, err
		}
		return gateway.Target{Key: c.CallSID, Channel: keys.ChannelBySID(c.CallSID), Org: c.Org}, nil
	})
}

// history adapts the bus's recorded sequences, read together with the
// call's record, to what the gateway needs.
type history struct {
	bus  *pubsub.Bus
	keys calls.Keys
}

func (h history) After(ctx context.Context, sid string, after gateway.Position, limit int) (gateway.HistoryRead, error) {
	sp, err := h.bus.Range(ctx, h.keys.Record(sid), h.keys.History(sid), h.keys.Record(sid),
		pubsub.Position(after), limit)
	if err != nil {
		return gateway.HistoryRead{}, err
	}
	read := gateway.HistoryRead{Last: gateway.Position(sp.Last), Events: make([]gateway.Event, len(sp.Entries))}
	for i, e := range sp.Entries {
		read.Events[i] = gateway.Event{Position: gateway.Position(e.Position), Frame: e.Payload}
	}
	if len(sp.With) > 0 {
		c, err := calls.ParseRecord(sp.With)
		if err != nil {
			return gateway.HistoryRead{}, err
		}
		if read.Record, err = json.Marshal(c); err != nil {
			return gateway.HistoryRead{}, err
		}
		read.Org = c.Org
	}
	return read, nil
}

// authenticator adapts the token verifier to what the gateway needs.
type authenticator struct{ v *auth.Verifier }

func (a authenticator) Authenticate(token string) (gateway.Identity, error) {
	id, err := a.v.Verify(token)
	if err != nil {
		return gateway.Identity{}, err
	}
	return gateway.Identity{User: id.User, Name: id.Name, Org: id.Org, Expires: id.Expires}, nil
}

// topicSource adapts the topic store to what the gateway needs.
type topicSource struct{ store *topics.Store }

func (t topicSource) Current(ctx context.Context, topic string) ([]byte, gateway.Position, error) {
	st, err := t.store.Current(ctx, topic)
	if err != nil || st.Version == 0 {
		return nil, gateway.Position{}, err
	}
	return topics.Frame(st), gateway.Position{Epoch: st.Epoch, Seq: st.Version}, nil
}
