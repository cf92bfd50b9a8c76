package redistest

import (
	"context"
	"strconv"
)

// dataArgs are the arguments every data node shares: loopback only, no
// persistence but the snapshot SHUTDOWN SAVE writes, and replicas that
// start their first sync at once instead of after the default 5 s.
func dataArgs(n *node) []string {
	return []string{
		"--port", strconv.Itoa(n.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--repl-diskless-sync-delay", "0",
		"--dir", n.dir,
		"--logfile", n.log,
	}
}

// renumber gives a node that could not bind its port a new one.
func renumber(n *node) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	n.setPort(ports[0])
	return nil
}

func startSingle(ctx context.Context) (*Server, error) {
	bins, err := lookBins(ModeReal, "redis-server")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	n, err := newNode("redis", bins["redis-server"], ports[0])
	if err != nil {
		return nil, err
	}
	n.argv = func() []string { return dataArgs(n) }
	if err := startAll(ctx, []*node{n}, renumber); err != nil {
		n.remove()
		return nil, err
	}
	return &Server{Addr: n.addr, Real: true, mode: ModeReal, url: "redis://" + n.addr, single: n}, nil
}
