package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// node is one redis-server process (a data node or a Sentinel) with its own
// directory and a client for the helpers. The process may be stopped and
// started again on the same address.
type node struct {
	name string // in messages: "node-3", "sentinel-1", …
	bin  string
	port int
	addr string // 127.0.0.1:port
	bus  int    // a cluster node's cluster bus port
	id   string // a cluster node's ID
	dir  string
	log  string
	// argv returns redis-server's arguments; it is called at each start,
	// so that a restart can take a changed role into account.
	argv func() []string

	proc *proc         // nil while stopped
	c    *redis.Client // reconnects by itself across restarts
}

func (n *node) String() string { return n.name + " (" + n.addr + ")" }

// proc is a started process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and been reaped
}

// newNode makes a node's directory and client; argv is set by the caller.
func newNode(name, bin string, port int) (*node, error) {
	dir, err := os.MkdirTemp("", "redistest-"+name+"-")
	if err != nil {
		return nil, err
	}
	n := &node{name: name, bin: bin, dir: dir, log: filepath.Join(dir, "redis.log")}
	n.setPort(port)
	return n, nil
}

// setPort sets the node's port, before it first starts.
func (n *node) setPort(port int) {
	if n.c != nil {
		n.c.Close()
	}
	n.port, n.addr = port, fmt.Sprintf("127.0.0.1:%d", port)
	n.c = redis.NewClient(&redis.Options{
		Addr:        n.addr,
		MaxRetries:  -1, // the helpers poll; a retry would only hide what they look for
		DialTimeout: time.Second,
		// One dial per command: the helpers poll, and go-redis's retries
		// would only slow them down.
		DialerRetries: 1,
		ReadTimeout:   5 * time.Second,
		PoolSize:      4,
		Protocol:      2,
	})
}

func (n *node) running() bool { return n.proc != nil }

// start starts the process and waits until it answers PING.
func (n *node) start(ctx context.Context) error {
	if n.proc != nil {
		return fmt.Errorf("%s is already running", n)
	}
	cmd := exec.Command(n.bin, n.argv()...)
	cmd.Dir = n.dir
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("start %s: %w", n, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	n.proc = p
	for {
		err := ping(ctx, n.addr)
		if err == nil {
			// A fresh client: the old one may still be waiting out the
			// dial errors it met while the process was down.
			n.setPort(n.port)
			return nil
		}
		select {
		case <-p.done:
			n.proc = nil
			return &exitError{node: n, log: n.tail()}
		case <-ctx.Done():
			return fmt.Errorf("%s does not answer PING: %v\n%s", n, err, n.tail())
		case <-time.After(pollInterval): // a starting process says nowhere that it is ready
		}
	}
}

// ping sends PING on a new connection and wants +PONG (a server still
// loading its data answers -LOADING).
func ping(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING: %q", strings.TrimSpace(line))
	}
	return nil
}

// exitError is a process that exited while starting.
type exitError struct {
	node *node
	log  string
}

func (e *exitError) Error() string {
	return fmt.Sprintf("%s exited while starting:\n%s", e.node, e.log)
}

// portTaken reports whether a node failed to start because its port was
// taken after freePorts found it free.
func portTaken(err error) bool {
	var e *exitError
	return errors.As(err, &e) && strings.Contains(e.log, "Address already in use")
}

// kill kills the process with SIGKILL and waits until it is gone.
func (n *node) kill() {
	if n.proc == nil {
		return
	}
	_ = n.proc.cmd.Process.Kill()
	<-n.proc.done
	n.proc = nil
}

// shutdown stops the process with SHUTDOWN SAVE, so that a start finds
// its data (a snapshot is written even with saving turned off).
func (n *node) shutdown(ctx context.Context) error {
	if n.proc == nil {
		return nil
	}
	// The connection closes without a reply.
	_ = n.c.Do(ctx, "SHUTDOWN", "SAVE").Err()
	select {
	case <-n.proc.done:
		n.proc = nil
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s did not shut down: %w\n%s", n, ctx.Err(), n.tail())
	}
}

// remove kills the process, closes the client and deletes the directory.
func (n *node) remove() {
	n.kill()
	n.c.Close()
	os.RemoveAll(n.dir)
}

func removeAll(nodes []*node) {
	for _, n := range nodes {
		n.remove()
	}
}

// startAll starts nodes at once. A node whose port was taken in the
// meantime by another process gets new ports from renumber and is tried
// again; renumber may be nil when the ports are fixed.
func startAll(ctx context.Context, nodes []*node, renumber func(*node) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for try := 0; ; try++ {
				errs[i] = n.start(ctx)
				if errs[i] == nil || renumber == nil || try == 3 || !portTaken(errs[i]) {
					return
				}
				if errs[i] = renumber(n); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// tail returns the last lines of the node's log.
func (n *node) tail() string {
	f, err := os.Open(n.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// role returns the node's ROLE: "master", "slave" or "sentinel", and for a
// replica the address of its master and whether the link to it is up.
func (n *node) role(ctx context.Context) (role, master string, linked bool, err error) {
	v, err := n.c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", "", false, err
	}
	role, _ = v[0].(string)
	if role == "slave" && len(v) >= 4 {
		host, _ := v[1].(string)
		port, _ := v[2].(int64)
		state, _ := v[3].(string)
		return role, fmt.Sprintf("%s:%d", host, port), state == "connected", nil
	}
	return role, "", false, nil
}

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago,
// all different (they are held together until all are found).
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// poll runs check every pollInterval until it returns nil, and returns
// check's last error if ctx ends first. It is for states Redis announces
// nowhere, such as a cluster's view of itself converging.
func poll(ctx context.Context, what string, check func(context.Context) error) error {
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// spawnReq asks the spawner to start a process.
type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// spawn starts cmd so that, on Linux, the kernel kills it when the test
// process dies (killed by a timeout, say) and nothing is left running.
// The kernel does that when the thread that started the child ends, so all
// children are started from one goroutine locked to its thread for the
// life of the process, never from a thread the Go runtime may retire.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawnCh {
				dieWithParent(r.cmd)
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	spawnCh <- r
	return <-r.err
}
