package callgate_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection keeps the package graph pointing one way:
// cmd wires everything; gateway imports neither the bus, the calls nor the
// topics; calls may use the bus; the bus knows nothing of sockets, calls or
// topics.
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/callgate/callgate/"
	forbidden := map[string][]string{
		"pubsub":  {"gateway", "calls", "cmd/", "github.com/gorilla/websocket", "github.com/labstack/echo"},
		"gateway": {"pubsub", "calls", "topics", "auth", "cmd/", "github.com/redis/go-redis"},
		"auth":    {"gateway", "calls", "pubsub", "topics", "cmd/", "github.com/redis/go-redis"},
		"calls":   {"gateway", "topics", "cmd/", "github.com/gorilla/websocket"},
		"topics":  {"gateway", "calls", "pubsub", "cmd/", "github.com/gorilla/websocket"},
		// callgate tail is a client of the protocol: sockets, no server.
		"internal/tail": {"gateway", "calls", "pubsub", "topics", "auth", "cmd/",
			"github.com/redis/go-redis", "github.com/labstack/echo"},
		// The viewer is a static page: it knows the gateway only through
		// the client it embeds.
		"viewer": {"gateway", "calls", "pubsub", "topics", "auth", "cmd/",
			"github.com/gorilla/websocket", "github.com/redis/go-redis", "github.com/labstack/echo"},
		// The event frame's format: the standard library only.
		"internal/wire": {"gateway", "calls", "pubsub", "topics", "auth", "cmd/",
			"github.com/gorilla/websocket", "github.com/redis/go-redis", "github.com/labstack/echo"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "./"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				target := b
				if !strings.Contains(b, ".") {
					target = mod + b
				}
				if strings.HasPrefix(dep, target) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
