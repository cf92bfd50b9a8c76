package calls

import (
	"testing"
	"time"
)

func TestCallCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newCallCache(2 * time.Second)
	c.m.Now = func() time.Time { return now }
	running := Call{CallSID: "EL_1", ConversationID: "conv_1", Status: StatusInProgress}
	has := func(id, want string) {
		t.Helper()
		got, ok := c.get(id)
		if ok != (want != "") || got.CallSID != want {
			t.Fatalf("get(%q) = %q, %v; want %q", id, got.CallSID, ok, want)
		}
	}

	c.remember("conv_1", running)
	has("conv_1", "EL_1")
	has("EL_1", "EL_1") // a call_sid always resolves to its call

	now = now.Add(3 * time.Second)
	has("conv_1", "")
	has("EL_1", "")

	// Saved here: cached by call_sid only, since another call could have
	// conv_1 as its call_sid; an entry by conversation_id is refreshed.
	c.put(running)
	has("EL_1", "EL_1")
	has("conv_1", "")
	c.remember("conv_1", running)
	ended := running
	ended.Status = StatusDone
	c.put(ended)
	has("EL_1", "")
	has("conv_1", "")

	// Calls not in progress are not cached.
	c.remember("EL_2", Call{CallSID: "EL_2", Status: StatusInitiated})
	has("EL_2", "")

	// Forgetting a call leaves another call's entry under the same string.
	other := Call{CallSID: "conv_1", Status: StatusInProgress}
	c.remember("conv_1", other)
	c.put(ended)
	has("conv_1", "conv_1")

	// A nil cache caches nothing.
	var off *callCache
	off.remember("EL_1", running)
	off.put(running)
	if _, ok := off.get("EL_1"); ok {
		t.Fatal("a nil cache answered")
	}
}
