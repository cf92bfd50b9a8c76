package deploy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/internal/wstest"
)

const (
	e2eSecret    = "whsec_e2e_secret"
	e2eAPIKey    = "e2e-api-key"
	e2eJWTSecret = "e2e-jwt-secret"
)

// e2eToken is an HS256 socket token for user e2e-user.
func e2eToken(t *testing.T) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "e2e-user",
		"exp": time.Now().Add(10 * time.Minute).Unix(),
	}).SignedString([]byte(e2eJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// e2eCluster is Redis, three callgate processes and nginx in front of them
// with the shared configuration, all on loopback.
type e2eCluster struct {
	t         *testing.T
	url       string           // nginx, http://127.0.0.1:port
	instances map[string]*proc // by instance id
	addrs     map[string]string
	accessLog string
	http      *http.Client
	redisPort int
}

// startE2ECluster starts them; env is added to each instance's environment.
func startE2ECluster(t *testing.T, env ...string) *e2eCluster {
	t.Helper()
	return startE2EClusterWith(t, "", env...)
}

// startE2EClusterWith starts them with extra added to nginx's
// per-environment server configuration (a test's own locations).
func startE2EClusterWith(t *testing.T, extra string, env ...string) *e2eCluster {
	t.Helper()
	nginxBin, redisBin := requireTools(t)
	bin := buildCallgate(t)
	dir := t.TempDir()

	redisPort := freePort(t)
	redis := startProc(t, "redis-server", syscall.SIGTERM, []string{redisBin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(redisPort), "--dir", dir,
		"--appendonly", "no", "--save", "", "--logfile", ""}, cleanEnv())
	waitRedis(t, redis, redisPort, 10*time.Second)

	c := &e2eCluster{t: t, instances: map[string]*proc{}, addrs: map[string]string{},
		http: &http.Client{Timeout: 15 * time.Second}, redisPort: redisPort}
	var upstream strings.Builder
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("gateway-%d", i)
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		c.instances[id] = startProc(t, id, syscall.SIGKILL, []string{bin}, append(cleanEnv(
			"CALLGATE_ADDR="+addr,
			"CALLGATE_INSTANCE_ID="+id,
			fmt.Sprintf("CALLGATE_REDIS_URL=redis://127.0.0.1:%d/0", redisPort),
			"CALLGATE_WEBHOOK_SECRET="+e2eSecret,
			"CALLGATE_API_KEY="+e2eAPIKey,
			"CALLGATE_JWT_SECRET="+e2eJWTSecret,
			"CALLGATE_LOG_LEVEL=warn",
			"CALLGATE_SHUTDOWN_TIMEOUT=5s",
		), env...))
		c.addrs[id] = addr
		fmt.Fprintf(&upstream, "server %s max_fails=3 fail_timeout=10s;\n", addr)
	}
	for id, p := range c.instances {
		waitHTTP(t, p, "http://"+c.addrs[id]+"/readyz", 15*time.Second)
	}

	// nginx: deploy/local/nginx.conf around the shared callgate.conf, as
	// deploy/local/cluster.sh sets it up; only the two per-environment
	// files are written here.
	prefix := filepath.Join(dir, "nginx")
	for _, d := range []string{"callgate", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	main, err := os.ReadFile(filepath.Join("local", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	shared, err := filepath.Abs(filepath.Join("nginx", "callgate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	nginxPort := freePort(t)
	files := map[string]string{
		"nginx.conf":             string(main),
		"callgate/upstream.conf": upstream.String(),
		"callgate/server.conf":   fmt.Sprintf("listen 127.0.0.1:%d;\naccess_log access.log callgate;\n", nginxPort) + extra,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(prefix, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(shared, filepath.Join(prefix, "callgate.conf")); err != nil {
		t.Fatal(err)
	}
	global := "daemon off;"
	if os.Geteuid() == 0 {
		global += " user root;" // workers as "nobody" could not enter the test's directory
	}
	c.accessLog = filepath.Join(prefix, "access.log")
	errorLog := filepath.Join(prefix, "error.log")
	args := []string{nginxBin, "-p", prefix + "/", "-c", filepath.Join(prefix, "nginx.conf"), "-e", errorLog, "-g", global}
	if out, err := execOutput(append(args, "-t", "-q")); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	ngx := startProc(t, "nginx", syscall.SIGTERM, args, cleanEnv(), errorLog, c.accessLog)
	c.url = fmt.Sprintf("http://127.0.0.1:%d", nginxPort)
	waitHTTP(t, ngx, c.url+"/readyz", 10*time.Second)
	return c
}

func execOutput(argv []string) ([]byte, error) {
	return exec.Command(argv[0], argv[1:]...).CombinedOutput()
}

// do sends a request through nginx and returns the status, the response
// headers and the decoded JSON body.
func (c *e2eCluster) do(method, path string, body []byte, header http.Header) (int, http.Header, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		c.t.Fatalf("%s %s: %d, not a gateway's JSON answer: %q", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

// webhook posts a signed webhook through nginx and returns its event_id;
// the answer must be 200 "published" or, when nginx retried a delivery
// that had reached an instance, "duplicate".
func (c *e2eCluster) webhook(path string, body []byte, header http.Header) (string, error) {
	h := http.Header{calls.SignatureHeader: {calls.Sign([]byte(e2eSecret), time.Now(), body)}}
	for k, v := range header {
		h[k] = v
	}
	req, err := http.NewRequest(http.MethodPost, c.url+path, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header = h
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Status  string `json:"status"`
		EventID string `json:"event_id"`
	}
	if json.Unmarshal(raw, &out) != nil || resp.StatusCode != http.StatusOK ||
		(out.Status != "published" && out.Status != "duplicate") || out.EventID == "" {
		return "", fmt.Errorf("POST %s: %d %q", path, resp.StatusCode, raw)
	}
	return out.EventID, nil
}

func liveWebhook(sid string, n int) []byte {
	b, _ := json.Marshal(map[string]any{"call_sid": sid, "event": map[string]any{
		"type":                 "agent_response",
		"agent_response_event": map[string]any{"agent_response": fmt.Sprintf("utterance-%d", n), "event_id": n},
	}})
	return b
}

// socket is a WebSocket client that, unlike wstest's, can be read up to
// and including the server's close.
type socket struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan wstest.Frame
	err    error // why reading ended, once frames is closed
}

// connect opens a socket through nginx, authenticated with token in the
// Authorization header, or in ?token= when inQuery (as browsers do). It
// returns the socket with the id of the instance that holds it (from the
// welcome frame).
func (c *e2eCluster) connect(token string, inQuery bool) (*socket, string) {
	c.t.Helper()
	url := strings.Replace(c.url, "http://", "ws://", 1) + "/ws/calls/transcriptions"
	header := http.Header{"Authorization": {"Bearer " + token}}
	if inQuery {
		url, header = url+"?token="+token, nil
	}
	conn, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		c.t.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	s := &socket{t: c.t, conn: conn, frames: make(chan wstest.Frame, 1024)}
	c.t.Cleanup(func() { conn.Close() })
	go func() {
		defer close(s.frames)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				s.err = err
				return
			}
			var f wstest.Frame
			if json.Unmarshal(data, &f) != nil {
				f.Type = "<invalid json>"
			}
			f.Raw = data
			s.frames <- f
		}
	}()
	w := s.expect("welcome")
	var welcome struct {
		InstanceID string `json:"instance_id"`
		User       string `json:"user"`
	}
	if err := json.Unmarshal(w.Raw, &welcome); err != nil || c.instances[welcome.InstanceID] == nil {
		c.t.Fatalf("welcome %s: want the instance_id of one of %v", w.Raw, c.addrs)
	}
	if welcome.User != "e2e-user" {
		c.t.Fatalf("welcome %s: want user e2e-user from the token", w.Raw)
	}
	return s, welcome.InstanceID
}

func (s *socket) send(v any) {
	s.t.Helper()
	if err := s.conn.WriteJSON(v); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame, or ok=false once the connection has ended.
func (s *socket) next() (f wstest.Frame, ok bool) {
	s.t.Helper()
	select {
	case f, ok = <-s.frames:
		return f, ok
	case <-time.After(wstest.Wait):
		s.t.Fatalf("no frame within %s", wstest.Wait)
		return f, false
	}
}

// expect returns the next frame and fails unless it is of type typ.
func (s *socket) expect(typ string) wstest.Frame {
	s.t.Helper()
	f, ok := s.next()
	if !ok {
		s.t.Fatalf("connection ended (%v) while waiting for %q", s.err, typ)
	}
	if f.Type != typ {
		s.t.Fatalf("got frame %s, want type %q", f.Raw, typ)
	}
	return f
}

// upstreams returns the upstream addresses nginx used for requests whose
// access log line contains match.
func (c *e2eCluster) upstreams(match string) map[string]int {
	c.t.Helper()
	b, err := os.ReadFile(c.accessLog)
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]int{}
	re := regexp.MustCompile(`upstream=(\S+)`)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, match) {
			if m := re.FindStringSubmatch(line); m != nil {
				out[m[1]]++
			}
		}
	}
	return out
}

// TestNginxEndToEnd drives three callgate processes through nginx with the
// shared configuration only: API, WebSocket, signed webhooks spread over
// every instance; then the instance that holds the client's socket is
// stopped with SIGTERM while webhooks keep coming, and the client
// reconnects through nginx and resumes. It must end with every event once,
// in order.
func TestNginxEndToEnd(t *testing.T) {
	c := startE2ECluster(t)
	const sid, conv = "EL_e2e", "conv_e2e"

	// Register the call; its status is event 1.
	body, _ := json.Marshal(map[string]string{"call_sid": sid, "conversation_id": conv, "status": "in-progress"})
	status, _, out := c.do(http.MethodPost, "/api/calls", body,
		http.Header{"Authorization": {"Bearer " + e2eAPIKey}, "Content-Type": {"application/json"}})
	if status != http.StatusCreated {
		t.Fatalf("POST /api/calls through nginx: %d %v", status, out)
	}
	if status, _, _ := c.do(http.MethodPost, "/api/calls", body, nil); status != http.StatusUnauthorized {
		t.Fatalf("POST /api/calls without the API key: %d, want 401", status)
	}
	if resp, err := c.http.Get(c.url + "/metrics"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics through nginx: %v %v, want 404 (scrape instances directly)", resp, err)
	} else {
		resp.Body.Close()
	}

	token := e2eToken(t)
	ws, holder := c.connect(token, false)
	ws.send(map[string]string{"type": "subscribe", "id": "s1", "call": conv, "since": "0"})
	if f := ws.expect("subscribed"); f.Recovered == nil || !*f.Recovered {
		t.Fatalf("subscribe since 0: %s", f.Raw)
	}
	// What each event must hold, by event_id-1; event 1 is the status the
	// call was registered with.
	want := []string{`"in-progress"`}

	// received checks the next events on ws against want, from event from.
	received := func(ws *socket, from int) {
		t.Helper()
		for n := from; n <= len(want); n++ {
			f := ws.expect("event")
			if f.EventID != strconv.Itoa(n) {
				t.Fatalf("got event %s, want %d: %s", f.EventID, n, f.Raw)
			}
			if !bytes.Contains(f.Raw, []byte(want[n-1])) {
				t.Fatalf("event %d: %s, want it to hold %s", n, f.Raw, want[n-1])
			}
		}
	}

	// Webhooks through nginx, one X-Request-ID kept end to end.
	for n := 1; n <= 12; n++ {
		var h http.Header
		if n == 1 {
			h = http.Header{"X-Request-Id": {"e2e-request-1"}}
		}
		id, err := c.webhook("/webhooks/transcription", liveWebhook(sid, n), h)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf(`"utterance-%d"`, n))
		if id != strconv.Itoa(len(want)) {
			t.Fatalf("webhook %d: event_id %s, want %d", n, id, len(want))
		}
	}
	received(ws, 1)
	if got := c.upstreams("POST /webhooks/transcription"); len(got) != 3 {
		t.Errorf("webhooks went to %v: want all three instances (round robin)", got)
	}
	if got := c.upstreams("rid=e2e-request-1"); len(got) != 1 {
		t.Errorf("X-Request-ID e2e-request-1 not seen once in the access log: %v", got)
	}

	// Stop the instance that holds the socket while webhooks keep coming:
	// a third of them are answered before the SIGTERM, a third are posted
	// while the instance shuts down, and a third once it has exited.
	const more = 30
	victim := c.instances[holder]
	var wg sync.WaitGroup
	var mu sync.Mutex
	posted := map[string]int{} // event_id -> n
	errs := make(chan error, more)
	started := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, n := 0, 13; n < 13+more; i, n = i+1, n+1 {
			switch i {
			case more / 3:
				close(started)
			case 2 * more / 3:
				<-victim.done
			}
			id, err := c.webhook("/webhooks/transcription", liveWebhook(sid, n), nil)
			if err != nil {
				errs <- fmt.Errorf("webhook %d during the restart: %w", n, err)
				continue
			}
			mu.Lock()
			posted[id] = n
			mu.Unlock()
		}
	}()
	<-started
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Read what reached the socket before it closed; the client keeps the
	// last event_id it got.
	last := len(want)
	for {
		f, ok := ws.next()
		if !ok {
			if code := wstest.CloseCode(ws.err); code != websocket.CloseGoingAway {
				t.Errorf("socket ended with %v (code %d), want 1001 going away", ws.err, code)
			}
			break
		}
		if f.Type != "event" || f.EventID != strconv.Itoa(last+1) {
			t.Fatalf("before the close: got %s, want event %d", f.Raw, last+1)
		}
		last++
	}
	if !victim.waitExit(10 * time.Second) {
		t.Fatalf("%s still running 10 s after SIGTERM", holder)
	}
	if code := victim.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s exited with %d after SIGTERM, want 0", holder, code)
	}

	// Reconnect through nginx: another instance, resume after the last event.
	ws2, holder2 := c.connect(token, true)
	if holder2 == holder {
		t.Fatalf("reconnected to %s, which was stopped", holder2)
	}
	ws2.send(map[string]string{"type": "subscribe", "id": "s2", "call": sid, "since": strconv.Itoa(last)})
	if f := ws2.expect("subscribed"); f.Recovered == nil || !*f.Recovered {
		t.Fatalf("resume since %d: %s", last, f.Raw)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	// The webhooks were posted one after another: their events follow in
	// the same order.
	for i := 0; i < more; i++ {
		id := strconv.Itoa(len(want) + 1)
		n, ok := posted[id]
		if !ok || n != 13+i {
			t.Fatalf("event_id %s: answered for webhook %d (%v), want webhook %d", id, n, ok, 13+i)
		}
		want = append(want, fmt.Sprintf(`"utterance-%d"`, n))
	}

	// A post-call webhook larger than the 1 MiB default body limit: nginx
	// lets /webhooks/ bodies up to 64 MiB through.
	raw := bytes.Repeat([]byte{0xff, 0xfb, 0x90, 0x64}, 3<<18)
	audio := base64.StdEncoding.EncodeToString(raw)
	post, _ := json.Marshal(map[string]any{"type": "post_call_audio", "event_timestamp": time.Now().Unix(),
		"data": map[string]any{"agent_id": "agent_e2e", "conversation_id": conv, "full_audio": audio}})
	if len(post) < 4<<20 {
		t.Fatalf("post-call body is only %d bytes", len(post))
	}
	id, err := c.webhook("/webhooks/elevenlabs", post, nil)
	if err != nil {
		t.Fatalf("%d-byte post-call webhook through nginx: %v", len(post), err)
	}
	want = append(want, fmt.Sprintf(`"audio_bytes":%d`, len(raw)))
	if id != strconv.Itoa(len(want)) {
		t.Fatalf("post-call webhook: event_id %s, want %d", id, len(want))
	}

	received(ws2, last+1)
	// Nothing after the last event: a ping's pong comes next.
	ws2.send(map[string]string{"type": "ping", "id": "end"})
	ws2.expect("pong")

	if log, err := os.ReadFile(c.accessLog); err != nil || bytes.Contains(log, []byte(token)) {
		t.Errorf("nginx's access log holds the socket token (or cannot be read: %v)", err)
	}
}
