package calls

import (
	"testing"
	"time"
)

func TestCallCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newCallCache(2 * time.Second)
	c.m.Now = func() time.Time { return now }
	has := func(conv, want string) {
		t.Helper()
		got, ok := c.sid(conv)
		if ok != (want != "") || got != want {
			t.Fatalf("sid(%q) = %q, %v; want %q", conv, got, ok, want)
		}
	}
	c.put(Call{CallSID: "EL_1", ConversationID: "conv_1"})
	c.put(Call{CallSID: "EL_2"}) // no link, nothing to remember
	has("conv_1", "EL_1")
	has("EL_1", "")
	has("", "")
	now = now.Add(3 * time.Second)
	has("conv_1", "")

	// A nil cache caches nothing.
	var off *callCache
	off.put(Call{CallSID: "EL_1", ConversationID: "conv_1"})
	if _, ok := off.sid("conv_1"); ok {
		t.Fatal("a nil cache answered")
	}
}
