package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Sentinels' timing: a primary that does not answer for
// sentinelDownAfter is down, and a failover that has not completed within
// sentinelFailoverTimeout is abandoned and tried again after twice that.
// Far below the defaults (30 s and 3 min), so that KillPrimary takes
// seconds.
const (
	sentinelDownAfter       = 1000 * time.Millisecond
	sentinelFailoverTimeout = 2000 * time.Millisecond
	sentinelQuorum          = 2
)

// sentinelSet is a primary, a replica and three Sentinels.
type sentinelSet struct {
	data      []*node // the primary and the replica, in either role
	sentinels []*node
	primary   *node   // the data node the Sentinels last agreed on
	stopped   []*node // by Stop, until Restart
}

func startSentinel(ctx context.Context) (*Server, error) {
	bins, err := lookBins(ModeSentinel, "redis-server")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	ss := &sentinelSet{}
	s, err := ss.create(ctx, bins["redis-server"], ports)
	if err != nil {
		removeAll(append(ss.sentinels, ss.data...))
		return nil, err
	}
	return s, nil
}

func (ss *sentinelSet) create(ctx context.Context, bin string, ports []int) (*Server, error) {
	for i := range 2 {
		n, err := newNode(fmt.Sprintf("redis-%d", i+1), bin, ports[i])
		if err != nil {
			return nil, err
		}
		// A data node that is not the primary starts as its replica. So
		// an old primary that RestartKilled brings back starts as a
		// replica of the new one, as an orchestrator would restart it;
		// Sentinel itself would convert it only some 8 to 18 s later, and
		// serve it as a stale primary meanwhile.
		n.argv = func() []string {
			args := dataArgs(n)
			if n != ss.primary {
				args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(ss.primary.port))
			}
			return args
		}
		ss.data = append(ss.data, n)
	}
	ss.primary = ss.data[0]
	// The primary first: the replica's arguments name its port.
	if err := startAll(ctx, ss.data[:1], renumber); err != nil {
		return nil, err
	}
	if err := startAll(ctx, ss.data[1:], renumber); err != nil {
		return nil, err
	}
	// The Sentinels find the replica in the primary's INFO as soon as they
	// start once it is connected; otherwise only at the next INFO, 10 s on.
	if err := poll(ctx, "replica to connect", func(ctx context.Context) error {
		return ss.replicasLinked(ctx)
	}); err != nil {
		return nil, err
	}

	// The monitored primary is in the configuration file, which Sentinel
	// rewrites as it learns; what a new port changes is on the command line.
	var addrs []string
	for i := range 3 {
		n, err := newNode(fmt.Sprintf("sentinel-%d", i+1), bin, ports[2+i])
		if err != nil {
			return nil, err
		}
		ss.sentinels = append(ss.sentinels, n)
		conf := filepath.Join(n.dir, "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
			"sentinel down-after-milliseconds %[1]s %[4]d\n"+
			"sentinel failover-timeout %[1]s %[5]d\n"+
			"sentinel parallel-syncs %[1]s 1\n",
			SentinelMaster, ss.primary.port, sentinelQuorum, sentinelDownAfter.Milliseconds(), sentinelFailoverTimeout.Milliseconds())
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		n.argv = func() []string {
			return []string{conf, "--sentinel",
				"--port", strconv.Itoa(n.port),
				"--bind", "127.0.0.1",
				"--dir", n.dir,
				"--logfile", n.log,
			}
		}
	}
	if err := startAll(ctx, ss.sentinels, renumber); err != nil {
		return nil, err
	}
	for _, n := range ss.sentinels {
		addrs = append(addrs, n.addr)
	}
	if err := ss.settle(ctx); err != nil {
		return nil, err
	}
	return &Server{Addr: addrs[0], Real: true, mode: ModeSentinel, url: addrsURL(addrs, "master_name="+SentinelMaster), sentinel: ss}, nil
}

// replicasLinked checks that the primary is one and that every other
// running data node is its replica with the link up.
func (ss *sentinelSet) replicasLinked(ctx context.Context) error {
	for _, n := range ss.data {
		if !n.running() {
			continue
		}
		role, master, linked, err := n.role(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("%s: ROLE: %w", n, err)
		case n == ss.primary && role != "master":
			return fmt.Errorf("primary %s has role %s", n, role)
		case n != ss.primary && (role != "slave" || master != ss.primary.addr || !linked):
			return fmt.Errorf("%s: role %s of %s, linked %v; want a replica of %s", n, role, master, linked, ss.primary)
		}
	}
	return nil
}

// settle waits until every Sentinel names ss.primary as the master, sees
// it up, knows the other two Sentinels and every data node as a replica,
// each running one up with its link to the primary up, and can reach the
// quorum; and the data nodes' ROLE agrees. Sentinel announces some of
// these as events but not all, nor those that happened before one
// subscribed, so the state is polled.
func (ss *sentinelSet) settle(ctx context.Context) error {
	err := poll(ctx, "Sentinels to agree", func(ctx context.Context) error {
		if err := ss.replicasLinked(ctx); err != nil {
			return err
		}
		for _, s := range ss.sentinels {
			if err := ss.sentinelAgrees(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
	if err != nil {
		var logs []string
		for _, n := range slices.Concat(ss.sentinels, ss.data) {
			logs = append(logs, fmt.Sprintf("--- %s:\n%s", n, n.tail()))
		}
		return fmt.Errorf("%w\n%s", err, strings.Join(logs, "\n"))
	}
	return nil
}

func (ss *sentinelSet) sentinelAgrees(ctx context.Context, s *node) error {
	addr, err := s.c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
	if err != nil {
		return err
	}
	if len(addr) != 2 || addr[0]+":"+addr[1] != ss.primary.addr {
		return fmt.Errorf("master %v, want %s", addr, ss.primary)
	}
	m, err := s.c.Do(ctx, "SENTINEL", "MASTER", SentinelMaster).Slice()
	if err != nil {
		return err
	}
	master := fieldMap(m)
	want := strconv.Itoa(len(ss.data) - 1)
	if master["flags"] != "master" || master["num-slaves"] != want || master["num-other-sentinels"] != strconv.Itoa(len(ss.sentinels)-1) {
		return fmt.Errorf("master flags %q, %s replicas (want %s), %s other Sentinels", master["flags"], master["num-slaves"], want, master["num-other-sentinels"])
	}
	rs, err := s.c.Do(ctx, "SENTINEL", "REPLICAS", SentinelMaster).Slice()
	if err != nil {
		return err
	}
	seen := map[string]map[string]string{}
	for _, r := range rs {
		f, _ := r.([]any)
		fm := fieldMap(f)
		seen[fm["ip"]+":"+fm["port"]] = fm
	}
	for _, n := range ss.data {
		r, ok := seen[n.addr]
		switch {
		case n == ss.primary:
		case !ok:
			return fmt.Errorf("does not know replica %s", n)
		case n.running() && (r["flags"] != "slave" || r["master-link-status"] != "ok"):
			return fmt.Errorf("replica %s: flags %q, master link %s", n, r["flags"], r["master-link-status"])
		}
	}
	if err := s.c.Do(ctx, "SENTINEL", "CKQUORUM", SentinelMaster).Err(); err != nil {
		return fmt.Errorf("CKQUORUM: %w", err)
	}
	return nil
}

// fieldMap reads a reply of alternating names and values.
func fieldMap(v []any) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(v); i += 2 {
		k, _ := v[i].(string)
		val, _ := v[i+1].(string)
		m[k] = val
	}
	return m
}

// Primary returns the address of the primary the Sentinels name.
func (s *Server) Primary(t testing.TB) string {
	t.Helper()
	defer s.lock(t, "Primary", ModeSentinel)()
	return s.sentinel.primary.addr
}

// KillPrimary kills (SIGKILL) the primary and returns the address of the
// replica once every Sentinel has announced it as the new primary
// (+switch-master) and the deployment is usable again. Writes the replica
// had not received are lost, as in production. RestartKilled brings the
// old primary back.
func (s *Server) KillPrimary(t testing.TB) string {
	t.Helper()
	defer s.lockFault(t, "KillPrimary", ModeSentinel)()
	ss := s.sentinel
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	if err := ss.settle(ctx); err != nil {
		t.Fatalf("redistest: KillPrimary: %v", err)
	}
	old := ss.primary
	var replica *node
	for _, n := range ss.data {
		if n != old && n.running() {
			replica = n
		}
	}
	if replica == nil {
		t.Fatalf("redistest: KillPrimary: %s has no running replica to promote", old)
	}
	// Subscribed before the kill, so that no announcement is missed.
	var subs []*redis.PubSub
	defer func() {
		for _, ps := range subs {
			ps.Close()
		}
	}()
	for _, n := range ss.sentinels {
		ps := n.c.Subscribe(ctx, "+switch-master")
		subs = append(subs, ps)
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatalf("redistest: subscribe to %s: %v", n, err)
		}
	}
	began := time.Now()
	old.kill()
	s.killed = append(s.killed, old)
	// The payload is "<master name> <old ip> <old port> <new ip> <new port>".
	want := fmt.Sprintf("%s %s %s", SentinelMaster, strings.Replace(old.addr, ":", " ", 1), strings.Replace(replica.addr, ":", " ", 1))
	for i, ps := range subs {
		for {
			m, err := ps.ReceiveMessage(ctx)
			if err != nil {
				t.Fatalf("redistest: KillPrimary: waiting for %s to announce %s: %v", ss.sentinels[i], replica, err)
			}
			if m.Payload == want {
				break
			}
		}
	}
	ss.primary = replica
	if err := ss.settle(ctx); err != nil {
		t.Fatalf("redistest: KillPrimary: after the switch to %s: %v", replica, err)
	}
	t.Logf("redistest: killed primary %s; %s promoted by the Sentinels in %s", old, replica, time.Since(began).Round(time.Millisecond))
	return replica.addr
}

// stop shuts the data nodes down, the replica first so that nothing can
// be promoted; the Sentinels keep running and see the primary down. It
// is an outage, not a failover: the Sentinels are first told to wait an
// hour before judging the primary down, or they may promote the replica
// the moment it is back, before the primary (restart gives them their
// usual wait again).
func (ss *sentinelSet) stop(ctx context.Context) error {
	if err := ss.setDownAfter(ctx, time.Hour); err != nil {
		return err
	}
	for _, primary := range []bool{false, true} {
		for _, n := range ss.data {
			if n.running() && (n == ss.primary) == primary {
				if err := n.shutdown(ctx); err != nil {
					return err
				}
				ss.stopped = append(ss.stopped, n)
			}
		}
	}
	return nil
}

// restart starts the stopped data nodes with their snapshots, the primary
// first, and waits until the Sentinels see it up again.
func (ss *sentinelSet) restart(ctx context.Context) error {
	for _, primary := range []bool{true, false} {
		var group []*node
		for _, n := range ss.stopped {
			if (n == ss.primary) == primary {
				group = append(group, n)
			}
		}
		if err := startAll(ctx, group, nil); err != nil {
			return err
		}
	}
	ss.stopped = nil
	if err := ss.settle(ctx); err != nil {
		return err
	}
	return ss.setDownAfter(ctx, sentinelDownAfter)
}

// setDownAfter sets how long every Sentinel waits before it judges the
// primary down.
func (ss *sentinelSet) setDownAfter(ctx context.Context, d time.Duration) error {
	for _, s := range ss.sentinels {
		if !s.running() {
			continue
		}
		if err := s.c.Do(ctx, "SENTINEL", "SET", SentinelMaster, "down-after-milliseconds", d.Milliseconds()).Err(); err != nil {
			return fmt.Errorf("%s: SENTINEL SET down-after-milliseconds: %w", s, err)
		}
	}
	return nil
}

// flush runs FLUSHALL on the primary; the replica follows.
func (ss *sentinelSet) flush(ctx context.Context) error {
	return ss.primary.c.FlushAll(ctx).Err()
}
