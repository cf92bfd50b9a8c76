package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/redis/go-redis/v9"
)

// redisModeVariables are the three ways to give callgate its Redis; an
// instance sets exactly one.
var redisModeVariables = []string{"CALLGATE_REDIS_URL", "CALLGATE_REDIS_CLUSTER", "CALLGATE_REDIS_SENTINEL"}

// composeProfile is one way docker-compose.yml runs the topology: the
// default services, or a profile that adds its own Redis, gateways and
// nginx.
type composeProfile struct {
	name     string // "" for the default services
	variable string // the Redis variable of its gateways
	redis    []string
	setup    []string // services that run once and exit
	gateways []string
	nginx    string
	port     string // nginx's default port on the host
}

var composeProfiles = []composeProfile{
	{
		name: "", variable: "CALLGATE_REDIS_URL",
		redis: []string{"redis"}, gateways: gatewayServices, nginx: "nginx", port: "8080",
	},
	{
		name: "cluster", variable: "CALLGATE_REDIS_CLUSTER",
		redis:    []string{"redis-cluster-1", "redis-cluster-2", "redis-cluster-3", "redis-cluster-4", "redis-cluster-5", "redis-cluster-6"},
		setup:    []string{"redis-cluster-init"},
		gateways: []string{"gateway-cluster-1", "gateway-cluster-2", "gateway-cluster-3"},
		nginx:    "nginx-cluster", port: "8081",
	},
	{
		name: "sentinel", variable: "CALLGATE_REDIS_SENTINEL",
		redis:    []string{"redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"},
		gateways: []string{"gateway-sentinel-1", "gateway-sentinel-2", "gateway-sentinel-3"},
		nginx:    "nginx-sentinel", port: "8082",
	},
}

func (cp composeProfile) services() []string {
	return slices.Concat(cp.redis, cp.setup, cp.gateways, []string{cp.nginx})
}

// load loads docker-compose.yml with this profile enabled.
func (cp composeProfile) load(t *testing.T) *types.Project {
	t.Helper()
	if cp.name == "" {
		return mustLoadCompose(t, composeSecrets())
	}
	return mustLoadCompose(t, composeSecrets(), cp.name)
}

func profile(t *testing.T, name string) composeProfile {
	t.Helper()
	i := slices.IndexFunc(composeProfiles, func(cp composeProfile) bool { return cp.name == name })
	if i < 0 {
		t.Fatalf("no profile %q", name)
	}
	return composeProfiles[i]
}

// TestComposeProfileServices: a profile adds its own services to the
// default ones, which run unchanged; without it they are not started.
func TestComposeProfileServices(t *testing.T) {
	def := profile(t, "")
	for _, cp := range composeProfiles[1:] {
		p := cp.load(t)
		want := slices.Concat(def.services(), cp.services())
		got := p.ServiceNames()
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("profile %s: services %v, want %v", cp.name, got, want)
		}
		for _, name := range cp.services() {
			if s := service(t, p, name); !slices.Equal(s.Profiles, []string{cp.name}) {
				t.Errorf("%s: profiles %v, want [%s]", name, s.Profiles, cp.name)
			}
		}
	}
}

// TestComposeRedisModeVariables: every callgate service, of every profile,
// sets exactly one of the three Redis variables: its profile's.
func TestComposeRedisModeVariables(t *testing.T) {
	p := mustLoadCompose(t, composeSecrets(), "cluster", "sentinel")
	checked := 0
	for _, cp := range composeProfiles {
		for _, name := range cp.gateways {
			s := service(t, p, name)
			var set []string
			for _, k := range redisModeVariables {
				if v, ok := s.Environment[k]; ok && v != nil && *v != "" {
					set = append(set, k)
				}
			}
			if !slices.Equal(set, []string{cp.variable}) {
				t.Errorf("%s (profile %q) sets %v, want exactly %s", name, cp.name, set, cp.variable)
			}
			checked++
		}
	}
	// No callgate service outside the lists above.
	gateways := 0
	for _, s := range p.Services {
		if s.Image == "callgate:local" {
			gateways++
		}
	}
	if gateways != checked {
		t.Errorf("%d services run callgate, %d are checked", gateways, checked)
	}
}

// checkProfileFrontEnd checks a profile's gateways and nginx: the same
// gateways as the default ones, reachable by the default upstream names on
// the profile's own network, behind an nginx of their own.
func checkProfileFrontEnd(t *testing.T, p *types.Project, cp composeProfile) {
	t.Helper()
	def := service(t, p, "gateway-1")
	for i, name := range cp.gateways {
		s := service(t, p, name)
		if s.Image != def.Image || !slices.Equal(s.HealthCheck.Test, def.HealthCheck.Test) ||
			s.StopGracePeriod == nil || *s.StopGracePeriod != *def.StopGracePeriod || !s.ReadOnly {
			t.Errorf("%s differs from gateway-1 in image, health check, grace period or read_only", name)
		}
		if id := envValue(t, s, "CALLGATE_INSTANCE_ID"); id != name {
			t.Errorf("%s: CALLGATE_INSTANCE_ID %q", name, id)
		}
		alias := fmt.Sprintf("gateway-%d", i+1)
		if n, ok := s.Networks[cp.name]; len(s.Networks) != 1 || !ok || n == nil || !slices.Equal(n.Aliases, []string{alias}) {
			t.Errorf("%s: networks %v, want only %s with alias %s (nginx's upstream list)", name, s.Networks, cp.name, alias)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s publishes ports: clients go through nginx", name)
		}
	}
	n := service(t, p, cp.nginx)
	if len(n.Ports) != 1 || n.Ports[0].Published != cp.port || n.Ports[0].Target != 8080 {
		t.Errorf("%s ports %+v, want %s:8080", cp.nginx, n.Ports, cp.port)
	}
	if _, ok := n.Networks[cp.name]; len(n.Networks) != 1 || !ok {
		t.Errorf("%s: networks %v, want only %s", cp.nginx, n.Networks, cp.name)
	}
	if mounts(n) != mounts(service(t, p, "nginx")) || n.Image != service(t, p, "nginx").Image {
		t.Errorf("%s: want nginx's image and configuration", cp.nginx)
	}
	checkDependsOn(t, n, types.ServiceConditionHealthy, cp.gateways...)
	for _, name := range cp.redis {
		if len(service(t, p, name).Ports) > 0 {
			t.Errorf("%s publishes ports: only nginx should be reachable from the host", name)
		}
	}
}

// mounts sums up a service's volumes.
func mounts(s types.ServiceConfig) string {
	var m []string
	for _, v := range s.Volumes {
		m = append(m, fmt.Sprintf("%s:%s:%v", v.Source, v.Target, v.ReadOnly))
	}
	return strings.Join(m, " ")
}

// checkDependsOn checks that s waits for each of deps with condition.
func checkDependsOn(t *testing.T, s types.ServiceConfig, condition string, deps ...string) {
	t.Helper()
	for _, d := range deps {
		if dep, ok := s.DependsOn[d]; !ok || dep.Condition != condition {
			t.Errorf("%s: depends_on %s %+v, want condition %s", s.Name, d, dep, condition)
		}
	}
}

// checkScriptMount checks that s mounts deploy/redis read-only at target
// and runs script from it.
func checkScriptMount(t *testing.T, s types.ServiceConfig, target, script string) {
	t.Helper()
	i := slices.IndexFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == target })
	if i < 0 {
		t.Fatalf("%s mounts nothing at %s", s.Name, target)
	}
	v := s.Volumes[i]
	if rel, _ := filepath.Rel(mustAbs(t, repoRoot), v.Source); filepath.ToSlash(rel) != "deploy/redis" || !v.ReadOnly {
		t.Errorf("%s: %s is %s (read-only %v), want deploy/redis read-only", s.Name, target, v.Source, v.ReadOnly)
	}
	if _, err := os.Stat(filepath.Join(v.Source, script)); err != nil {
		t.Errorf("%s: %v", s.Name, err)
	}
	if len(s.Command) < 2 || s.Command[0] != "sh" || s.Command[1] != target+"/"+script {
		t.Errorf("%s: command %q, want sh %s/%s", s.Name, s.Command, target, script)
	}
}

func TestComposeClusterProfile(t *testing.T) {
	cp := profile(t, "cluster")
	p := cp.load(t)
	var nodes []string
	for _, name := range cp.redis {
		s := service(t, p, name)
		checkRedisServer(t, p, s)
		if !hasFlag(s.Command, "--cluster-enabled", "yes") {
			t.Errorf("%s: command %q: want --cluster-enabled yes", name, s.Command)
		}
		nodes = append(nodes, name+":6379")
	}

	// The one-shot set-up joins exactly the six servers, once they answer.
	init := service(t, p, "redis-cluster-init")
	checkScriptMount(t, init, "/callgate-redis", "cluster-create.sh")
	if got := init.Command[2:]; !slices.Equal(got, nodes) {
		t.Errorf("redis-cluster-init joins %v, want %v", got, nodes)
	}
	checkDependsOn(t, init, types.ServiceConditionHealthy, cp.redis...)
	if init.Restart != "no" {
		t.Errorf("redis-cluster-init: restart %q, want no (it runs once)", init.Restart)
	}

	// The gateways start once the cluster is created, with every node as a
	// seed and the same partitions.
	var partitions []string
	for _, name := range cp.gateways {
		s := service(t, p, name)
		checkDependsOn(t, s, types.ServiceConditionCompletedSuccessfully, "redis-cluster-init")
		o, err := redis.ParseClusterURL(envValue(t, s, "CALLGATE_REDIS_CLUSTER"))
		if err != nil {
			t.Fatalf("%s: CALLGATE_REDIS_CLUSTER: %v", name, err)
		}
		if !slices.Equal(o.Addrs, nodes) {
			t.Errorf("%s: CALLGATE_REDIS_CLUSTER names %v, want %v", name, o.Addrs, nodes)
		}
		partitions = append(partitions, envValue(t, s, "CALLGATE_REDIS_CLUSTER_PARTITIONS"))
	}
	if partitions[0] != "64" || slices.ContainsFunc(partitions, func(v string) bool { return v != partitions[0] }) {
		t.Errorf("CALLGATE_REDIS_CLUSTER_PARTITIONS %v: want the same, 64 by default, on every gateway", partitions)
	}
	checkProfileFrontEnd(t, p, cp)
}

func TestComposeSentinelProfile(t *testing.T) {
	cp := profile(t, "sentinel")
	p := cp.load(t)
	primary, replica := service(t, p, "redis-primary"), service(t, p, "redis-replica")
	checkRedisServer(t, p, primary)
	checkRedisServer(t, p, replica)
	if !hasFlag(replica.Command, "--replicaof", "redis-primary") {
		t.Errorf("redis-replica: command %q: want --replicaof redis-primary 6379", replica.Command)
	}
	checkDependsOn(t, replica, types.ServiceConditionHealthy, "redis-primary")
	for _, s := range []types.ServiceConfig{primary, replica} {
		if !hasFlag(s.Command, "--replica-announce-ip", s.Name) {
			t.Errorf("%s: want --replica-announce-ip %s, so that Sentinels know it by name", s.Name, s.Name)
		}
	}

	// The master name the Sentinels use (sentinel.sh's default).
	script, err := os.ReadFile(filepath.Join("redis", "sentinel.sh"))
	if err != nil {
		t.Fatal(err)
	}
	const master = "callgate"
	if !strings.Contains(string(script), "SENTINEL_MASTER_NAME:-"+master+"}") {
		t.Fatalf("sentinel.sh does not name the primary %s by default", master)
	}
	var sentinels []string
	for _, name := range cp.redis[2:] {
		s := service(t, p, name)
		checkScriptMount(t, s, "/callgate-redis", "sentinel.sh")
		if want := []string{"sh", "/callgate-redis/sentinel.sh", "/data/sentinel.conf", "redis-primary", "6379", "--port", "26379"}; !slices.Equal(s.Command, want) {
			t.Errorf("%s: command %q, want %q", name, s.Command, want)
		}
		// sentinel.conf is rewritten by Sentinel and must survive restarts.
		namedVolume(t, p, s, "/data")
		if got := envValue(t, s, "SENTINEL_ANNOUNCE_IP"); got != name {
			t.Errorf("%s: SENTINEL_ANNOUNCE_IP %q, want its own name", name, got)
		}
		checkDependsOn(t, s, types.ServiceConditionHealthy, "redis-primary", "redis-replica")
		if hc := s.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "ckquorum "+master) {
			t.Errorf("%s: healthcheck %+v: want SENTINEL CKQUORUM %s", name, hc, master)
		}
		sentinels = append(sentinels, name+":26379")
	}

	for _, name := range cp.gateways {
		s := service(t, p, name)
		checkDependsOn(t, s, types.ServiceConditionHealthy, cp.redis[2:]...)
		o, err := redis.ParseFailoverURL(envValue(t, s, "CALLGATE_REDIS_SENTINEL"))
		if err != nil {
			t.Fatalf("%s: CALLGATE_REDIS_SENTINEL: %v", name, err)
		}
		if !slices.Equal(o.SentinelAddrs, sentinels) || o.MasterName != master {
			t.Errorf("%s: CALLGATE_REDIS_SENTINEL names %v and master %q, want %v and %s", name, o.SentinelAddrs, o.MasterName, sentinels, master)
		}
	}
	checkProfileFrontEnd(t, p, cp)
}
