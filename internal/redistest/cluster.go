package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterNodeTimeout is the cluster's node timeout: how long a node may be
// unreachable before the others start to fail it over. Far below the
// default 15 s, so that KillMaster takes seconds, and far enough above a
// busy machine's hiccups that no node is failed over by mistake.
const clusterNodeTimeout = 2000 * time.Millisecond

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// cluster is six redis-server processes in cluster mode.
type cluster struct {
	nodes   []*node
	cli     string  // redis-cli
	stopped []*node // by Stop, until Restart
}

func startCluster(ctx context.Context) (*Server, error) {
	bins, err := lookBins(ModeCluster, "redis-server", "redis-cli")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(12)
	if err != nil {
		return nil, err
	}
	c := &cluster{cli: bins["redis-cli"]}
	for i := range 6 {
		n, err := newNode(fmt.Sprintf("node-%d", i+1), bins["redis-server"], ports[2*i])
		if err != nil {
			removeAll(c.nodes)
			return nil, err
		}
		n.bus = ports[2*i+1]
		n.argv = func() []string {
			return append(dataArgs(n),
				"--cluster-enabled", "yes",
				"--cluster-port", strconv.Itoa(n.bus),
				"--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
				"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout.Milliseconds())),
				// A replica may always take over, however long it was cut
				// off from its master: tests kill masters at any moment.
				"--cluster-replica-validity-factor", "0",
			)
		}
		c.nodes = append(c.nodes, n)
	}
	s, err := c.create(ctx)
	if err != nil {
		removeAll(c.nodes)
		return nil, err
	}
	return s, nil
}

// renumberClusterNode gives a node that could not bind its ports new ones.
func renumberClusterNode(n *node) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	n.setPort(ports[0])
	n.bus = ports[1]
	return nil
}

// create starts the nodes and joins them into a cluster with redis-cli.
func (c *cluster) create(ctx context.Context) (*Server, error) {
	if err := startAll(ctx, c.nodes, renumberClusterNode); err != nil {
		return nil, err
	}
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, n.addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, c.cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, n := range c.nodes {
		id, err := n.c.ClusterMyID(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("%s: CLUSTER MYID: %w", n, err)
		}
		n.id = id
	}
	if _, err := c.settle(ctx, nil); err != nil {
		return nil, err
	}
	return &Server{Addr: addrs[0], Real: true, mode: ModeCluster, url: addrsURL(addrs, ""), cluster: c}, nil
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr  string
	flags     []string
	master    string   // the master's ID, "-" for a master
	slots     [][2]int // ranges, both ends included
	migrating bool     // a slot is being imported or migrated
}

func (n clusterNode) is(flag string) bool { return slices.Contains(n.flags, flag) }

func (n clusterNode) owns(slot int) bool {
	for _, r := range n.slots {
		if r[0] <= slot && slot <= r[1] {
			return true
		}
	}
	return false
}

// clusterView is the cluster as one node sees it, by node ID.
type clusterView map[string]clusterNode

// parseClusterNodes reads the reply of CLUSTER NODES:
// <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
func parseClusterNodes(s string) (clusterView, error) {
	v := clusterView{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{id: f[0], addr: addr, flags: strings.Split(f[2], ","), master: f[3]}
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") {
				n.migrating = true
				continue
			}
			lo, hi, isRange := strings.Cut(sl, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("CLUSTER NODES slot %q in %q", sl, line)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		v[n.id] = n
	}
	return v, nil
}

// key sums up what the nodes must agree on: each node's role, master,
// slots and whether it has failed; not what differs by observer (myself,
// pings, links).
func (v clusterView) key() string {
	var lines []string
	for _, n := range v {
		role := "master"
		if n.is("slave") {
			role = "slave"
		}
		state := "up"
		switch {
		case n.is("fail"):
			state = "fail"
		case n.is("fail?"), n.is("handshake"), n.is("noaddr"):
			state = "unsure"
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s %v %v", n.id, role, state, n.master, n.slots, n.migrating))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// owner returns the master that serves slot.
func (v clusterView) owner(slot int) (clusterNode, bool) {
	for _, n := range v {
		if n.is("master") && n.owns(slot) {
			return n, true
		}
	}
	return clusterNode{}, false
}

func (c *cluster) byID(id string) *node {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

func (c *cluster) running() []*node {
	var r []*node
	for _, n := range c.nodes {
		if n.running() {
			r = append(r, n)
		}
	}
	return r
}

// settle waits until the cluster is usable and every running node sees
// the same cluster, and cond (if not nil) holds for that view; it returns
// the view. Usable means: each running node reports cluster_state:ok with
// all 16384 slots served; all agree on roles, masters and slot owners;
// every slot is served by a running master; no slot is being migrated;
// every stopped node is marked failed; every running replica's link to
// its master is up. A cluster announces none of this, so it is polled.
func (c *cluster) settle(ctx context.Context, cond func(clusterView) error) (clusterView, error) {
	var agreed clusterView
	err := poll(ctx, "cluster to settle", func(ctx context.Context) error {
		v, err := c.check(ctx)
		if err != nil {
			return err
		}
		if cond != nil {
			if err := cond(v); err != nil {
				return err
			}
		}
		agreed = v
		return nil
	})
	if err != nil {
		var logs []string
		for _, n := range c.nodes {
			logs = append(logs, fmt.Sprintf("--- %s:\n%s", n, n.tail()))
		}
		return nil, fmt.Errorf("%w\n%s", err, strings.Join(logs, "\n"))
	}
	return agreed, nil
}

// check is one look at the cluster for settle.
func (c *cluster) check(ctx context.Context) (clusterView, error) {
	var agreed clusterView
	var first *node
	for _, n := range c.running() {
		info, err := n.c.ClusterInfo(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("%s: CLUSTER INFO: %w", n, err)
		}
		fields := map[string]string{}
		for _, line := range strings.Split(info, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				fields[k] = v
			}
		}
		if fields["cluster_state"] != "ok" || fields["cluster_slots_ok"] != strconv.Itoa(clusterSlots) {
			return nil, fmt.Errorf("%s: cluster_state %s, cluster_slots_ok %s", n, fields["cluster_state"], fields["cluster_slots_ok"])
		}
		text, err := n.c.ClusterNodes(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("%s: CLUSTER NODES: %w", n, err)
		}
		v, err := parseClusterNodes(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if agreed == nil {
			agreed, first = v, n
		} else if v.key() != agreed.key() {
			return nil, fmt.Errorf("%s and %s see different clusters:\n%s\n---\n%s", first, n, agreed.key(), v.key())
		}
	}
	if agreed == nil {
		return nil, errors.New("no node is running")
	}
	for _, n := range c.nodes {
		cn, ok := agreed[n.id]
		switch {
		case !ok:
			return nil, fmt.Errorf("%s is not in the cluster", n)
		case !n.running() && !cn.is("fail"):
			return nil, fmt.Errorf("%s is down but not marked failed (flags %v)", n, cn.flags)
		case n.running() && (cn.is("fail") || cn.is("fail?") || cn.is("handshake") || cn.is("noaddr")):
			return nil, fmt.Errorf("%s is up but flagged %v", n, cn.flags)
		case cn.migrating:
			return nil, fmt.Errorf("%s has a slot in migration", n)
		}
	}
	covered := 0
	for _, cn := range agreed {
		if !cn.is("master") {
			continue
		}
		for _, r := range cn.slots {
			covered += r[1] - r[0] + 1
			if n := c.byID(cn.id); n == nil || !n.running() {
				return nil, fmt.Errorf("slots %d-%d are served by %s, which is down", r[0], r[1], cn.addr)
			}
		}
	}
	if covered != clusterSlots {
		return nil, fmt.Errorf("masters serve %d slots", covered)
	}
	for _, n := range c.running() {
		if !agreed[n.id].is("slave") {
			continue
		}
		role, master, linked, err := n.role(ctx)
		want := agreed[agreed[n.id].master].addr
		if err != nil || role != "slave" || master != want || !linked {
			return nil, fmt.Errorf("replica %s: ROLE %s of %s, linked %v (want a link to %s): %v", n, role, master, linked, want, err)
		}
	}
	return agreed, nil
}

// slotOf returns the hash slot of key, as the cluster computes it.
func (c *cluster) slotOf(ctx context.Context, key string) (int, error) {
	for _, n := range c.running() {
		slot, err := n.c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			return 0, fmt.Errorf("%s: CLUSTER KEYSLOT: %w", n, err)
		}
		return int(slot), nil
	}
	return 0, errors.New("no node is running")
}

// ownerOf returns key's slot, and the running master that serves it and
// the settled view it was read from.
func (c *cluster) ownerOf(ctx context.Context, key string) (int, *node, clusterView, error) {
	v, err := c.settle(ctx, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	slot, err := c.slotOf(ctx, key)
	if err != nil {
		return 0, nil, nil, err
	}
	cn, ok := v.owner(slot)
	if !ok {
		return 0, nil, nil, fmt.Errorf("no master serves slot %d", slot)
	}
	return slot, c.byID(cn.id), v, nil
}

// replicaOf returns a running replica of master whose link is up.
func (c *cluster) replicaOf(v clusterView, master *node) (*node, error) {
	for _, n := range c.running() {
		if cn := v[n.id]; cn.is("slave") && cn.master == master.id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("master %s has no running replica", master)
}

// SlotOwner returns the address of the master that serves key's slot.
func (s *Server) SlotOwner(t testing.TB, key string) string {
	t.Helper()
	defer s.lock(t, "SlotOwner", ModeCluster)()
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	_, owner, _, err := s.cluster.ownerOf(ctx, key)
	if err != nil {
		t.Fatalf("redistest: owner of %q: %v", key, err)
	}
	return owner.addr
}

// KillMaster kills (SIGKILL) the master that serves key's slot, and
// returns the address of its replica once the cluster has promoted it and
// is usable again. Writes the replica had not received are lost, as in
// production. RestartKilled brings the killed node back.
func (s *Server) KillMaster(t testing.TB, key string) string {
	t.Helper()
	defer s.lockFault(t, "KillMaster", ModeCluster)()
	c := s.cluster
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	slot, master, v, err := c.ownerOf(ctx, key)
	if err != nil {
		t.Fatalf("redistest: KillMaster: %v", err)
	}
	if _, err := c.replicaOf(v, master); err != nil {
		t.Fatalf("redistest: KillMaster: nothing to promote: %v", err)
	}
	began := time.Now()
	master.kill()
	s.killed = append(s.killed, master)
	v, err = c.settle(ctx, func(v clusterView) error {
		if o, _ := v.owner(slot); o.id == master.id {
			return fmt.Errorf("slot %d is still served by the killed %s", slot, master)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redistest: KillMaster: after killing %s: %v", master, err)
	}
	o, _ := v.owner(slot)
	t.Logf("redistest: killed master %s; replica %s promoted and cluster ok in %s", master, o.addr, time.Since(began).Round(time.Millisecond))
	return o.addr
}

// Failover runs CLUSTER FAILOVER on the replica of the master that serves
// key's slot, and returns the replica's address once it is the master and
// its old master follows it. A manual failover loses no write.
func (s *Server) Failover(t testing.TB, key string) string {
	t.Helper()
	defer s.lockFault(t, "Failover", ModeCluster)()
	c := s.cluster
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	slot, master, v, err := c.ownerOf(ctx, key)
	if err != nil {
		t.Fatalf("redistest: Failover: %v", err)
	}
	replica, err := c.replicaOf(v, master)
	if err != nil {
		t.Fatalf("redistest: Failover: %v", err)
	}
	began := time.Now()
	if err := replica.c.Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatalf("redistest: CLUSTER FAILOVER on %s: %v", replica, err)
	}
	_, err = c.settle(ctx, func(v clusterView) error {
		if o, _ := v.owner(slot); o.id != replica.id {
			return fmt.Errorf("slot %d is served by %s, not yet by %s", slot, o.addr, replica)
		}
		if old := v[master.id]; !old.is("slave") || old.master != replica.id {
			return fmt.Errorf("%s does not follow %s yet", master, replica)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redistest: Failover to %s: %v", replica, err)
	}
	t.Logf("redistest: CLUSTER FAILOVER: %s took over from %s in %s", replica, master, time.Since(began).Round(time.Millisecond))
	return replica.addr
}

// migrateBatch is how many keys one MIGRATE moves.
const migrateBatch = 100

// MigrateSlot moves key's slot, with every key in it, to another master,
// as redis-cli --cluster reshard does: CLUSTER SETSLOT … IMPORTING on the
// destination and MIGRATING on the source, MIGRATE of the slot's keys in
// batches (CLUSTER GETKEYSINSLOT), then CLUSTER SETSLOT … NODE on every
// master. It returns the new owner's address once every node agrees. It
// may run while clients use the slot: meanwhile they get ASK redirections,
// and TRYAGAIN for commands on several keys of which only some have moved.
func (s *Server) MigrateSlot(t testing.TB, key string) string {
	t.Helper()
	defer s.lockFault(t, "MigrateSlot", ModeCluster)()
	c := s.cluster
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	slot, src, v, err := c.ownerOf(ctx, key)
	if err != nil {
		t.Fatalf("redistest: MigrateSlot: %v", err)
	}
	var masters []*node
	var dst *node
	for _, n := range c.running() {
		if v[n.id].is("master") {
			masters = append(masters, n)
			if dst == nil && n != src {
				dst = n
			}
		}
	}
	if dst == nil {
		t.Fatalf("redistest: MigrateSlot: no master but %s to move slot %d to", src, slot)
	}
	began := time.Now()
	moved, err := c.migrate(ctx, slot, src, dst, masters)
	if err != nil {
		t.Fatalf("redistest: MigrateSlot %d from %s to %s: %v", slot, src, dst, err)
	}
	_, err = c.settle(ctx, func(v clusterView) error {
		if o, _ := v.owner(slot); o.id != dst.id {
			return fmt.Errorf("slot %d is served by %s, not yet by %s", slot, o.addr, dst)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redistest: MigrateSlot %d to %s: %v", slot, dst, err)
	}
	t.Logf("redistest: slot %d moved from %s to %s with %d keys in %s", slot, src, dst, moved, time.Since(began).Round(time.Millisecond))
	return dst.addr
}

// migrate moves slot from src to dst and returns how many keys it moved.
func (c *cluster) migrate(ctx context.Context, slot int, src, dst *node, masters []*node) (int, error) {
	if err := dst.c.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.id).Err(); err != nil {
		return 0, fmt.Errorf("SETSLOT IMPORTING on %s: %w", dst, err)
	}
	if err := src.c.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id).Err(); err != nil {
		return 0, fmt.Errorf("SETSLOT MIGRATING on %s: %w", src, err)
	}
	// Keys created meanwhile go to dst (the source answers ASK for keys it
	// does not have), so this ends.
	moved := 0
	for {
		keys, err := src.c.ClusterGetKeysInSlot(ctx, slot, migrateBatch).Result()
		if err != nil {
			return moved, fmt.Errorf("GETKEYSINSLOT on %s: %w", src, err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", dst.port, "", 0, 10000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.c.Do(ctx, args...).Err(); err != nil {
			return moved, fmt.Errorf("MIGRATE of %d keys: %w", len(keys), err)
		}
		moved += len(keys)
	}
	// The destination first, so that it serves the slot before the source
	// starts to send clients there with MOVED; then every other master.
	order := []*node{dst, src}
	for _, m := range masters {
		if m != dst && m != src {
			order = append(order, m)
		}
	}
	for _, n := range order {
		if err := n.c.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dst.id).Err(); err != nil {
			return moved, fmt.Errorf("SETSLOT NODE on %s: %w", n, err)
		}
	}
	return moved, nil
}

// rejoined waits until the nodes KillMaster killed, started again with
// their node IDs (nodes.conf), have learnt that their slots moved on and
// are replicas of the nodes that serve them now.
func (c *cluster) rejoined(ctx context.Context, back []*node) error {
	_, err := c.settle(ctx, func(v clusterView) error {
		for _, n := range back {
			if !v[n.id].is("slave") {
				return fmt.Errorf("%s is not a replica yet", n)
			}
		}
		return nil
	})
	return err
}

// stop shuts every running node down, replicas first, so that no replica
// takes over from a master stopped before it.
func (c *cluster) stop(ctx context.Context) error {
	v, err := c.settle(ctx, nil)
	if err != nil {
		return err
	}
	for _, master := range []bool{false, true} {
		for _, n := range c.running() {
			if v[n.id].is("master") == master {
				if err := n.shutdown(ctx); err != nil {
					return err
				}
				c.stopped = append(c.stopped, n)
			}
		}
	}
	return nil
}

// restart starts the nodes stop stopped, with their snapshots and
// nodes.conf, and waits until the cluster is usable.
func (c *cluster) restart(ctx context.Context) error {
	if err := startAll(ctx, c.stopped, nil); err != nil {
		return err
	}
	c.stopped = nil
	_, err := c.settle(ctx, nil)
	return err
}

// flush runs FLUSHALL on every master.
func (c *cluster) flush(ctx context.Context) error {
	v, err := c.settle(ctx, nil)
	if err != nil {
		return err
	}
	for _, n := range c.running() {
		if v[n.id].is("master") {
			if err := n.c.FlushAll(ctx).Err(); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		}
	}
	return nil
}
