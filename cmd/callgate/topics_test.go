package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/callgate/callgate/internal/redistest"
	"github.com/callgate/callgate/internal/wstest"
)

func (in *instance) topicWS(topic string) *wstest.Client {
	in.t.Helper()
	c := wstest.Dial(in.t, in.url+"/ws/"+topic)
	c.Welcome()
	return c
}

func (in *instance) putTopic(topic, doc string) (int, map[string]any) {
	in.t.Helper()
	return in.do(http.MethodPut, "/api/topics/"+topic, []byte(doc), apiHeader())
}

// expectState reads the next frame and checks it is topic's state at
// version with data equal (as JSON) to want, if want is not empty.
func expectState(t *testing.T, c *wstest.Client, topic string, version int, want string) wstest.Frame {
	t.Helper()
	f := c.Expect("state")
	var got struct {
		Topic   string          `json:"topic"`
		Version int             `json:"version"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(f.Raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Topic != topic || got.Version != version || (want != "" && !jsonEqual(t, got.Data, []byte(want))) {
		t.Fatalf("got %s, want %s v%d %s", f.Raw, topic, version, want)
	}
	return f
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		t.Fatalf("not JSON: %s / %s", a, b)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// TestTopicsChangedOnlyAcrossInstances: identical states put through
// different instances are broadcast once; clients on every instance get
// each change once; a late client gets the current state on connect.
func TestTopicsChangedOnlyAcrossInstances(t *testing.T) {
	_, ins := startCluster(t, 3)
	var clients []*wstest.Client
	for _, in := range ins {
		clients = append(clients, in.topicWS("workflows"), in.topicWS("workflows"))
	}
	routes := ins[1].topicWS("routes")

	first := `{"workflows":[{"id":"wf1","state":"running","steps":3}],"updated":1}`
	same := []string{
		"{\n  \"updated\": 1.0,\n  \"workflows\": [ {\"steps\":3, \"state\":\"running\", \"id\":\"wf1\"} ]\n}",
		`{"updated":1e0,"workflows":[{"id":"wf1","steps":3.0,"state":"running"}]}`,
	}
	status, out := ins[0].putTopic("workflows", first)
	if status != 200 || out["version"] != 1.0 || out["changed"] != true {
		t.Fatalf("first PUT: %d %v", status, out)
	}
	for i, doc := range same {
		status, out := ins[1+i%2].putTopic("workflows", doc)
		if status != 200 || out["version"] != 1.0 || out["changed"] != false {
			t.Fatalf("identical PUT %d: %d %v", i, status, out)
		}
	}
	second := `{"workflows":[{"id":"wf1","state":"done","steps":3}],"updated":2}`
	if status, out = ins[2].putTopic("workflows", second); status != 200 || out["version"] != 2.0 {
		t.Fatalf("second PUT: %d %v", status, out)
	}
	var epoch string
	for _, c := range clients {
		expectState(t, c, "workflows", 1, first)
		f := expectState(t, c, "workflows", 2, second) // nothing in between
		epoch = f.Epoch
	}
	if epoch == "" || out["epoch"] != epoch {
		t.Fatalf("PUT answered epoch %v, the state frames carry %q", out["epoch"], epoch)
	}
	late := ins[0].topicWS("workflows")
	expectState(t, late, "workflows", 2, second)

	// Another topic is independent and saw none of it.
	ins[0].putTopic("routes", `["r1"]`)
	expectState(t, routes, "routes", 1, `["r1"]`)

	status, out = ins[1].do(http.MethodGet, "/api/topics/workflows", nil, apiHeader())
	if status != 200 || out["version"] != 2.0 || out["epoch"] != epoch || !jsonEqual(t, mustJSON(out["data"]), []byte(second)) {
		t.Fatalf("GET: %d %v", status, out)
	}
	status, out = ins[1].do(http.MethodGet, "/api/topics/workflow-history", nil, apiHeader())
	if status != 200 || out["version"] != 0.0 || out["epoch"] != "0" || out["data"] != nil {
		t.Fatalf("GET of a topic without state: %d %v", status, out)
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// TestTopicsConcurrentPuts: concurrent changes through several instances
// get versions 1..N with no gap or repeat, and every client, including one
// that connects mid-way, ends with the final state.
func TestTopicsConcurrentPuts(t *testing.T) {
	_, ins := startCluster(t, 3)
	var early []*wstest.Client
	for _, in := range ins {
		early = append(early, in.topicWS("routes"))
	}
	const writers, each = 6, 20
	versions := make(chan int, 2*writers*each)
	var wg sync.WaitGroup
	var midway *wstest.Client
	var midOnce sync.Once
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if w == 0 && i == each/2 {
					midOnce.Do(func() { midway = ins[1].topicWS("routes") })
				}
				// Every writer's docs differ from everyone else's, and
				// each writer repeats its previous doc once.
				doc := fmt.Sprintf(`{"writer":%d,"n":%d}`, w, i)
				for range 2 {
					status, out := ins[(w+i)%3].putTopic("routes", doc)
					if status != 200 {
						t.Errorf("PUT: %d %v", status, out)
						return
					}
					if out["changed"] == true {
						versions <- int(out["version"].(float64))
					}
				}
			}
		}()
	}
	wg.Wait()
	close(versions)
	if t.Failed() {
		return
	}
	seen := map[int]bool{}
	for v := range versions {
		if seen[v] {
			t.Fatalf("version %d given twice", v)
		}
		seen[v] = true
	}
	// A writer's repeat may follow another writer's change, so changes
	// number between writers*each and twice that; all must be 1..N.
	n := len(seen)
	for v := 1; v <= n; v++ {
		if !seen[v] {
			t.Fatalf("versions have a gap at %d (of %d)", v, n)
		}
	}
	_, final := ins[0].do(http.MethodGet, "/api/topics/routes", nil, apiHeader())
	if int(final["version"].(float64)) != n {
		t.Fatalf("final version %v, want %d", final["version"], n)
	}
	finalData := mustJSON(final["data"])
	for i, c := range early {
		for v := 1; v <= n; v++ {
			f := expectState(t, c, "routes", v, "")
			if v == n && !bytes.Contains(f.Raw, finalData) {
				t.Fatalf("client %d: final state %s, want data %s", i, f.Raw, finalData)
			}
		}
	}
	last := 0
	for last < n {
		f := midway.Expect("state")
		v, _ := strconv.Atoi(strings.Split(strings.Split(string(f.Raw), `"version":`)[1], ",")[0])
		if v <= last {
			t.Fatalf("mid-way client: version %d after %d", v, last)
		}
		last = v
	}
}

// TestTopicBadInput: each bad request gets its 4xx and changes nothing.
func TestTopicBadInput(t *testing.T) {
	srv := redistest.Start(t)
	in := startInstance(t, srv, redistest.Prefix(t), "a", func(c *config) { c.MaxTopicBytes = 1024 })
	c := in.topicWS("workflows")
	for _, tc := range []struct {
		name, path, body string
		header           http.Header
		status           int
		code             string
	}{
		{"invalid JSON", "/api/topics/workflows", `{"a":`, apiHeader(), 400, "invalid_json"},
		{"two values", "/api/topics/workflows", `{"a":1}{"b":2}`, apiHeader(), 400, "invalid_json"},
		{"empty body", "/api/topics/workflows", ``, apiHeader(), 400, "invalid_json"},
		{"over the size limit", "/api/topics/workflows", `"` + strings.Repeat("x", 2000) + `"`, apiHeader(), 413, "body_too_large"},
		{"unknown topic", "/api/topics/nope", `{}`, apiHeader(), 404, "unknown_topic"},
		{"no API key", "/api/topics/workflows", `{}`, http.Header{}, 401, "unauthorized"},
		{"wrong API key", "/api/topics/workflows", `{}`, http.Header{"Authorization": {"Bearer x"}}, 401, "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := in.do(http.MethodPut, tc.path, []byte(tc.body), tc.header)
			if status != tc.status || out["code"] != tc.code || out["message"] == "" {
				t.Fatalf("got %d %v, want %d %s", status, out, tc.status, tc.code)
			}
		})
	}
	if status, out := in.do(http.MethodGet, "/api/topics/workflows", nil, apiHeader()); status != 200 || out["version"] != 0.0 {
		t.Fatalf("after bad PUTs: %d %v", status, out)
	}
	// The socket answers only ping, and is not disturbed.
	c.Send(map[string]string{"type": "subscribe", "id": "x", "call": "EL_1"})
	if f := c.Expect("error"); f.Code != "unknown_type" {
		t.Fatalf("got %s", f.Raw)
	}
	in.putTopic("workflows", `{"ok":true}`)
	expectState(t, c, "workflows", 1, `{"ok":true}`)
	if resp, err := http.Get(in.url + "/ws/nope"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("unknown topic socket: %v %v", resp, err)
	}
}

// TestTopicResyncAfterRedisLoss: a state change whose live frame the
// gateway missed reaches its clients through the resync that follows the
// gateway's reconnection. The missed frame is never published at all (the
// state is written straight into Redis), so that only the resync can
// deliver it, however fast the gateway reconnects.
func TestTopicResyncAfterRedisLoss(t *testing.T) {
	srv := redistest.Start(t)
	prefix := redistest.Prefix(t)
	a := startInstance(t, srv, prefix, "a")
	b := startInstance(t, srv, prefix, "b")
	c := a.topicWS("workflows")
	b.putTopic("workflows", `{"v":1}`)
	expectState(t, c, "workflows", 1, `{"v":1}`)
	rdb := srv.Client(t)
	// What a PUT stores, without its publish (README: P:topic:{<name>}).
	if err := rdb.HSet(t.Context(), prefix+":topic:{workflows}", "version", 2, "data", `{"v":2}`).Err(); err != nil {
		t.Fatal(err)
	}
	srv.KillClients(t, "pubsub")
	expectState(t, c, "workflows", 2, `{"v":2}`)
	// Live frames flow again after the resync.
	if status, out := b.putTopic("workflows", `{"v":3}`); status != 200 || out["version"] != 3.0 {
		t.Fatalf("PUT after the resync: %d %v", status, out)
	}
	expectState(t, c, "workflows", 3, `{"v":3}`)
}
