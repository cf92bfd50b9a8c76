package deploy

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

var gatewayServices = []string{"gateway-1", "gateway-2", "gateway-3"}

// loadCompose loads docker-compose.yml with exactly the variables in env:
// neither the process environment nor a .env file is read. Docker is not
// needed. profiles are the Compose profiles to enable besides the default
// services.
func loadCompose(t *testing.T, env map[string]string, profiles ...string) (*types.Project, error) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(list),
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return opts.LoadProject(ctx)
}

func composeSecrets() map[string]string {
	return map[string]string{
		"CALLGATE_WEBHOOK_SECRET": "whsec_from_the_env",
		"CALLGATE_API_KEY":        "api-key-from-the-env",
		"CALLGATE_JWT_SECRET":     "jwt-secret-from-the-env",
	}
}

func mustLoadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	p, err := loadCompose(t, env, profiles...)
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

func envValue(t *testing.T, s types.ServiceConfig, name string) string {
	t.Helper()
	v, ok := s.Environment[name]
	if !ok || v == nil {
		t.Fatalf("service %s: %s is not set", s.Name, name)
	}
	return *v
}

// hasFlag reports whether args holds flag followed by value.
func hasFlag(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}

func TestComposeServices(t *testing.T) {
	p := mustLoadCompose(t, composeSecrets())
	want := append([]string{"nginx", "redis"}, gatewayServices...)
	got := p.ServiceNames()
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
}

func TestComposeRedis(t *testing.T) {
	p := mustLoadCompose(t, composeSecrets())
	checkRedisServer(t, p, service(t, p, "redis"))
}

// checkRedisServer checks what every Redis server in docker-compose.yml
// needs: Redis 7, append-only persistence in a volume of its own, no
// eviction, a health check, no port on the host.
func checkRedisServer(t *testing.T, p *types.Project, r types.ServiceConfig) {
	t.Helper()
	if !strings.HasPrefix(r.Image, "redis:7") {
		t.Errorf("%s: image %q, want redis:7 or a 7.x tag", r.Name, r.Image)
	}
	if !hasFlag(r.Command, "--appendonly", "yes") {
		t.Errorf("%s: command %q: want --appendonly yes", r.Name, r.Command)
	}
	if !hasFlag(r.Command, "--maxmemory-policy", "noeviction") {
		t.Errorf("%s: command %q: want --maxmemory-policy noeviction (callgate's keys must not be evicted)", r.Name, r.Command)
	}
	data := namedVolume(t, p, r, "/data")
	for _, other := range p.Services {
		for _, v := range other.Volumes {
			if other.Name != r.Name && v.Type == types.VolumeTypeVolume && v.Source == data {
				t.Errorf("%s and %s share volume %s", r.Name, other.Name, data)
			}
		}
	}
	hc := r.HealthCheck
	if hc == nil || hc.Disable || !slices.Contains(hc.Test, "redis-cli") || !slices.Contains(hc.Test, "ping") {
		t.Errorf("%s: healthcheck %+v: want redis-cli ping", r.Name, hc)
	}
	if len(r.Ports) > 0 {
		t.Errorf("%s publishes ports %+v: only nginx should be reachable from the host", r.Name, r.Ports)
	}
}

// namedVolume returns the name of the named volume s mounts at target,
// and fails the test if there is none or it is not declared.
func namedVolume(t *testing.T, p *types.Project, s types.ServiceConfig, target string) string {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == target && v.Type == types.VolumeTypeVolume {
			if _, ok := p.Volumes[v.Source]; !ok {
				t.Errorf("%s: volume %q is not declared under volumes", s.Name, v.Source)
			}
			return v.Source
		}
	}
	t.Fatalf("%s: volumes %+v: want a named volume at %s", s.Name, s.Volumes, target)
	return ""
}

func TestComposeGateways(t *testing.T) {
	env := composeSecrets()
	p := mustLoadCompose(t, env)
	root, _ := filepath.Abs(repoRoot)
	ids := map[string]string{}
	for _, name := range gatewayServices {
		s := service(t, p, name)
		if s.Build == nil {
			t.Fatalf("%s: no build section", name)
		}
		if ctx, _ := filepath.Abs(s.Build.Context); ctx != root {
			t.Errorf("%s: build context %q, want the repository root", name, s.Build.Context)
		}
		if df := filepath.ToSlash(s.Build.Dockerfile); df != "deploy/Dockerfile" && df != filepath.ToSlash(filepath.Join(root, "deploy", "Dockerfile")) {
			t.Errorf("%s: dockerfile %q, want deploy/Dockerfile", name, s.Build.Dockerfile)
		}
		if got := envValue(t, s, "CALLGATE_REDIS_URL"); got != "redis://redis:6379/0" {
			t.Errorf("%s: CALLGATE_REDIS_URL %q", name, got)
		}
		for _, k := range []string{"CALLGATE_WEBHOOK_SECRET", "CALLGATE_API_KEY", "CALLGATE_JWT_SECRET"} {
			if got := envValue(t, s, k); got != env[k] {
				t.Errorf("%s: %s %q, want %q from the environment", name, k, got, env[k])
			}
		}
		id := envValue(t, s, "CALLGATE_INSTANCE_ID")
		if id == "" {
			t.Errorf("%s: empty CALLGATE_INSTANCE_ID", name)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share CALLGATE_INSTANCE_ID %q", other, name, id)
		}
		ids[id] = name

		hc := s.HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
			t.Errorf("%s: healthcheck %+v: want an exec-form (CMD) test, the image has no shell", name, hc)
		} else if hc.Test[1] != "/usr/local/bin/callgate-healthcheck" {
			t.Errorf("%s: healthcheck runs %q, want /usr/local/bin/callgate-healthcheck from the image", name, hc.Test[1])
		}
		dep, ok := s.DependsOn["redis"]
		if !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s: depends_on redis %+v, want condition service_healthy", name, dep)
		}
		drain := 30 * time.Second
		if v, ok := s.Environment["CALLGATE_SHUTDOWN_TIMEOUT"]; ok && v != nil {
			d, err := time.ParseDuration(*v)
			if err != nil {
				t.Fatalf("%s: CALLGATE_SHUTDOWN_TIMEOUT %q: %v", name, *v, err)
			}
			drain = d
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= drain {
			t.Errorf("%s: stop_grace_period %v, want longer than the %s drain", name, s.StopGracePeriod, drain)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s publishes ports %+v: clients go through nginx", name, s.Ports)
		}
		if !s.ReadOnly {
			t.Errorf("%s: want read_only: true (callgate writes no files)", name)
		}
	}
}

func TestComposeNginx(t *testing.T) {
	p := mustLoadCompose(t, composeSecrets())
	n := service(t, p, "nginx")
	if len(n.Ports) != 1 || n.Ports[0].Published != "8080" || n.Ports[0].Target != 8080 {
		t.Errorf("nginx ports %+v, want 8080:8080", n.Ports)
	}
	for _, g := range gatewayServices {
		if dep, ok := n.DependsOn[g]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("nginx depends_on %s: %+v, want condition service_healthy", g, dep)
		}
	}
	// The shared server configuration and compose's own upstream list.
	mounts := map[string]string{}
	for _, v := range n.Volumes {
		rel, err := filepath.Rel(mustAbs(t, repoRoot), v.Source)
		if err != nil {
			t.Fatal(err)
		}
		mounts[v.Target] = filepath.ToSlash(rel)
		if !v.ReadOnly {
			t.Errorf("nginx mounts %s writable", v.Source)
		}
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("nginx mounts a missing file: %v", err)
		}
	}
	if got := mounts["/etc/nginx/conf.d/default.conf"]; got != "deploy/nginx/callgate.conf" {
		t.Errorf("nginx: /etc/nginx/conf.d/default.conf is %q, want deploy/nginx/callgate.conf", got)
	}
	if got := mounts["/etc/nginx/callgate"]; got != "deploy/nginx/compose" {
		t.Errorf("nginx: /etc/nginx/callgate is %q, want deploy/nginx/compose", got)
	}

	p = mustLoadCompose(t, map[string]string{
		"CALLGATE_WEBHOOK_SECRET": "s", "CALLGATE_API_KEY": "k", "CALLGATE_HTTP_PORT": "9090",
	})
	if got := service(t, p, "nginx").Ports[0].Published; got != "9090" {
		t.Errorf("CALLGATE_HTTP_PORT=9090: nginx publishes %q", got)
	}
}

// TestComposeUpstreamList checks that compose's nginx upstream list names
// exactly the gateway services, on the port they listen on.
func TestComposeUpstreamList(t *testing.T) {
	path := filepath.Join("nginx", "compose", "upstream.conf")
	servers, params := upstreamServers(t, path)
	var want []string
	for _, g := range gatewayServices {
		want = append(want, g+":8080")
	}
	if !slices.Equal(servers, want) {
		t.Errorf("%s lists %v, want %v", path, servers, want)
	}
	// Containers get new addresses when compose recreates them.
	for i, p := range params {
		if !slices.Contains(strings.Fields(p), "resolve") {
			t.Errorf("%s: %s is not re-resolved (resolve)", path, servers[i])
		}
	}
	b, _ := os.ReadFile(path)
	if !regexp.MustCompile(`(?m)^resolver 127\.0\.0\.11\b`).Match(b) {
		t.Errorf("%s: want Docker's resolver 127.0.0.11 for resolve", path)
	}
	shared, _ := os.ReadFile(filepath.Join("nginx", "callgate.conf"))
	if !regexp.MustCompile(`(?m)^\s*zone callgate \S+;`).Match(shared) {
		t.Error("callgate.conf: the upstream needs a zone for resolve")
	}
}

var serverLine = regexp.MustCompile(`^server\s+(\S+)\s+(.*);$`)

// upstreamServers returns the addresses and parameters of the server lines
// of an upstream list (other directives are skipped), and fails the test
// unless each has passive health parameters.
func upstreamServers(t *testing.T, path string) (addrs, params []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "resolver ") {
			continue
		}
		m := serverLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: unexpected line %q", path, line)
		}
		if !strings.Contains(m[2], "max_fails=") || !strings.Contains(m[2], "fail_timeout=") {
			t.Errorf("%s: %q has no max_fails/fail_timeout", path, line)
		}
		addrs, params = append(addrs, m[1]), append(params, m[2])
	}
	return addrs, params
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestComposeRequiresSecrets: without the secrets, loading fails and says
// which variable is missing and where to set it.
func TestComposeRequiresSecrets(t *testing.T) {
	for _, missing := range []string{"CALLGATE_WEBHOOK_SECRET", "CALLGATE_API_KEY"} {
		env := composeSecrets()
		delete(env, missing)
		_, err := loadCompose(t, env)
		if err == nil {
			t.Errorf("without %s: docker-compose.yml loaded; want an error", missing)
			continue
		}
		if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), ".env") {
			t.Errorf("without %s: error %q should name the variable and .env", missing, err)
		}
	}
	env := composeSecrets()
	env["CALLGATE_API_KEY"] = ""
	if _, err := loadCompose(t, env); err == nil || !strings.Contains(err.Error(), "CALLGATE_API_KEY") {
		t.Errorf("with an empty CALLGATE_API_KEY: got %v, want an error naming it", err)
	}
	if _, err := loadCompose(t, nil); err == nil {
		t.Error("with no environment: docker-compose.yml loaded; want an error")
	}
}

// TestEnvExample: .env.example sets every variable docker-compose.yml
// requires, with placeholders rather than secrets, and the .env it is
// copied to is ignored by git.
func TestEnvExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env.example: line %q is not NAME=value", line)
		}
		env[k] = v
	}
	for _, k := range []string{"CALLGATE_WEBHOOK_SECRET", "CALLGATE_API_KEY", "CALLGATE_JWT_SECRET"} {
		if !strings.HasPrefix(env[k], "replace-") {
			t.Errorf(".env.example: %s=%q, want a replace-… placeholder", k, env[k])
		}
	}
	if _, err := loadCompose(t, env); err != nil {
		t.Errorf("docker-compose.yml with .env.example: %v", err)
	}
	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".gitignore"))
	if err != nil || !slices.Contains(strings.Fields(string(ignore)), ".env") {
		t.Error(".gitignore must list .env")
	}
}
