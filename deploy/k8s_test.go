package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const k8sDir = "k8s"

// decodeManifest decodes one manifest strictly into obj: a field the
// Kubernetes type does not have, or a repeated one, is an error. It also
// checks the file holds one document of the expected apiVersion and kind.
func decodeManifest(t *testing.T, file, apiVersion, kind string, obj any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k8sDir, file))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\n---")) {
		t.Fatalf("%s: want one document per file", file)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(b, &tm); err != nil {
		t.Fatal(err)
	}
	if tm.APIVersion != apiVersion || tm.Kind != kind {
		t.Fatalf("%s: %s %s, want %s %s", file, tm.APIVersion, tm.Kind, apiVersion, kind)
	}
}

// manifests are the decoded files of deploy/k8s.
type manifests struct {
	deploy    appsv1.Deployment
	config    corev1.ConfigMap
	secret    corev1.Secret
	service   corev1.Service
	pdb       policyv1.PodDisruptionBudget
	hpa       autoscalingv2.HorizontalPodAutoscaler
	container corev1.Container
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{}
	decodeManifest(t, "deployment.yaml", "apps/v1", "Deployment", &m.deploy)
	decodeManifest(t, "configmap.yaml", "v1", "ConfigMap", &m.config)
	decodeManifest(t, "secret.example.yaml", "v1", "Secret", &m.secret)
	decodeManifest(t, "service.yaml", "v1", "Service", &m.service)
	decodeManifest(t, "pdb.yaml", "policy/v1", "PodDisruptionBudget", &m.pdb)
	decodeManifest(t, "hpa.yaml", "autoscaling/v2", "HorizontalPodAutoscaler", &m.hpa)
	cs := m.deploy.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("deployment: %d containers, want 1", len(cs))
	}
	m.container = cs[0]
	return m
}

func (m *manifests) podLabels() labels.Set { return m.deploy.Spec.Template.Labels }

// port resolves a probe or Service port (a number or a container port
// name) to a container port number.
func (m *manifests) port(t *testing.T, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range m.container.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("no container port named %q", p.StrVal)
	return 0
}

func TestK8sDeployment(t *testing.T) {
	m := loadManifests(t)
	d := m.deploy
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(m.podLabels()) {
		t.Errorf("deployment selector %v does not match its pod labels %v", d.Spec.Selector, m.podLabels())
	}
	c := m.container
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("container ports %+v, want 8080", c.Ports)
	}

	// Probes: ready means Redis answers and not draining; alive means serving.
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s path %q, want %s", p.name, p.probe.HTTPGet.Path, p.path)
		}
		if got := m.port(t, p.probe.HTTPGet.Port); got != 8080 {
			t.Errorf("%s port %d, want 8080", p.name, got)
		}
	}

	// Shutdown: preStop sleep, then SIGTERM and the drain, all within the
	// grace period.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("want lifecycle.preStop.sleep (the image has no shell or sleep binary)")
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if preStop < 2*time.Second {
		t.Errorf("preStop sleeps %s: too short for the endpoint removal to reach the load balancers", preStop)
	}
	drain, err := time.ParseDuration(m.config.Data["CALLGATE_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("configmap CALLGATE_SHUTDOWN_TIMEOUT: %v", err)
	}
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Errorf("terminationGracePeriodSeconds unset: want more than preStop %s + shutdown timeout %s", preStop, drain)
	} else if g := time.Duration(*grace) * time.Second; g <= preStop+drain {
		t.Errorf("terminationGracePeriodSeconds %s: want more than preStop %s + shutdown timeout %s", g, preStop, drain)
	}

	// Resources: requests for scheduling and the HPA, a memory limit.
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			t.Errorf("no %s request", r)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
		t.Errorf("memory limit %v: want one, at least the request", c.Resources.Limits)
	}

	// Security: non-root, read-only, no privilege escalation.
	pod := d.Spec.Template.Spec.SecurityContext
	if pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot {
		t.Error("pod securityContext: want runAsNonRoot: true")
	}
	if pod != nil && (pod.RunAsUser == nil || *pod.RunAsUser != 65532) {
		t.Errorf("pod runAsUser %v, want 65532, the image's nonroot user", pod.RunAsUser)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Error("container securityContext missing")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("container: want allowPrivilegeEscalation: false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("container: want readOnlyRootFilesystem: true")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container: want runAsNonRoot: true")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Error("container: want capabilities.drop [ALL]")
	}
}

// TestK8sConfigAndSecrets: settings from the ConfigMap, secrets only by
// reference to the Secret, whose example holds placeholders only.
func TestK8sConfigAndSecrets(t *testing.T) {
	m := loadManifests(t)
	c := m.container
	fromConfig := false
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == m.config.Name {
			fromConfig = true
		}
	}
	if !fromConfig {
		t.Errorf("container envFrom %+v does not use ConfigMap %q", c.EnvFrom, m.config.Name)
	}
	// Every key the Deployment reads, in any of the example Secrets.
	keys := map[string]bool{}
	for _, f := range secretExamples {
		var sec corev1.Secret
		decodeManifest(t, f.file, "v1", "Secret", &sec)
		for k := range sec.StringData {
			keys[k] = true
		}
	}
	secrets := append([]string{"CALLGATE_WEBHOOK_SECRET", "CALLGATE_API_KEY", "CALLGATE_JWT_SECRET"}, redisModeVariables...)
	for _, name := range secrets {
		if _, ok := m.config.Data[name]; ok {
			t.Errorf("ConfigMap holds %s: secrets belong in the Secret", name)
		}
		i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
		if i < 0 {
			t.Errorf("container env has no %s", name)
			continue
		}
		e := c.Env[i]
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s: want valueFrom.secretKeyRef, not a value", name)
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		mayLack := name == "CALLGATE_JWT_SECRET" || slices.Contains(redisModeVariables, name)
		if optional := ref.Optional != nil && *ref.Optional; optional != mayLack {
			t.Errorf("%s: optional %v; only the JWT secret (with a JWKS URL instead) and the Redis variables (one of three) may be absent", name, optional)
		}
		if ref.Name != m.secret.Name {
			t.Errorf("%s refers to Secret %q, want %q", name, ref.Name, m.secret.Name)
		}
		if !keys[ref.Key] {
			t.Errorf("%s refers to key %q, which no example Secret shows", name, ref.Key)
		}
	}
	for k, v := range m.secret.StringData {
		if !strings.Contains(v, "REPLACE_ME") {
			t.Errorf("secret.example.yaml: %s=%q is not a placeholder", k, v)
		}
	}
	if len(m.secret.Data) > 0 {
		t.Error("secret.example.yaml: use stringData placeholders, not data")
	}
	for k := range m.config.Data {
		if !strings.HasPrefix(k, "CALLGATE_") {
			t.Errorf("ConfigMap key %q is not a CALLGATE_* variable", k)
		}
	}
	id := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "CALLGATE_INSTANCE_ID" })
	if id < 0 || c.Env[id].ValueFrom == nil || c.Env[id].ValueFrom.FieldRef == nil ||
		c.Env[id].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Error("CALLGATE_INSTANCE_ID: want the pod name (fieldRef metadata.name)")
	}
}

func TestK8sService(t *testing.T) {
	m := loadManifests(t)
	s := m.service
	if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(m.podLabels()) {
		t.Errorf("service selector %v does not match the pod labels %v", s.Spec.Selector, m.podLabels())
	}
	if len(s.Spec.Ports) != 1 {
		t.Fatalf("service ports %+v, want one", s.Spec.Ports)
	}
	if got := m.port(t, s.Spec.Ports[0].TargetPort); got != 8080 {
		t.Errorf("service targetPort resolves to %d, want 8080", got)
	}
}

func TestK8sPodDisruptionBudget(t *testing.T) {
	m := loadManifests(t)
	p := m.pdb.Spec
	sel, err := metav1.LabelSelectorAsSelector(p.Selector)
	if err != nil || sel.Empty() || !sel.Matches(m.podLabels()) {
		t.Errorf("PDB selector %v does not match the pod labels %v", p.Selector, m.podLabels())
	}
	if (p.MinAvailable == nil) == (p.MaxUnavailable == nil) {
		t.Fatal("PDB: want exactly one of minAvailable and maxUnavailable")
	}
	replicas := int(*m.deploy.Spec.Replicas)
	if p.MaxUnavailable != nil {
		n, err := intstr.GetScaledValueFromIntOrPercent(p.MaxUnavailable, replicas, false)
		if err != nil || n < 1 || n >= replicas {
			t.Errorf("PDB maxUnavailable %v: want at least 1 and fewer than %d pods", p.MaxUnavailable, replicas)
		}
	} else {
		n, err := intstr.GetScaledValueFromIntOrPercent(p.MinAvailable, replicas, true)
		if err != nil || n < 1 || n >= replicas {
			t.Errorf("PDB minAvailable %v: want at least 1 and fewer than %d pods (drains must be possible)", p.MinAvailable, replicas)
		}
	}
}

func TestK8sHorizontalPodAutoscaler(t *testing.T) {
	m := loadManifests(t)
	h := m.hpa.Spec
	ref := h.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != m.deploy.Name {
		t.Errorf("HPA targets %+v, want apps/v1 Deployment %q", ref, m.deploy.Name)
	}
	if h.MinReplicas == nil || *h.MinReplicas != *m.deploy.Spec.Replicas {
		t.Errorf("HPA minReplicas %v, want the Deployment's %d", h.MinReplicas, *m.deploy.Spec.Replicas)
	}
	if h.MaxReplicas <= *m.deploy.Spec.Replicas {
		t.Errorf("HPA maxReplicas %d: want more than %d", h.MaxReplicas, *m.deploy.Spec.Replicas)
	}
	cpu := false
	for _, mt := range h.Metrics {
		if mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil &&
			mt.Resource.Name == corev1.ResourceCPU && mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType &&
			mt.Resource.Target.AverageUtilization != nil {
			cpu = true
		}
	}
	if !cpu {
		t.Errorf("HPA metrics %+v: want CPU utilization", h.Metrics)
	}
}

// TestK8sKustomization: kustomization.yaml applies every manifest but the
// examples, and sets the container's image.
func TestK8sKustomization(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName,omitempty"`
			NewTag  string `json:"newTag,omitempty"`
		} `json:"images"`
	}
	b, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatal(err)
	}
	if k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml kind %q", k.Kind)
	}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !strings.HasSuffix(b, ".example.yaml") {
			want = append(want, b)
		}
	}
	got := slices.Clone(k.Resources)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want %v", k.Resources, want)
	}
	m := loadManifests(t)
	if len(k.Images) != 1 || k.Images[0].Name != m.container.Image {
		t.Errorf("kustomization images %+v, want one for %q", k.Images, m.container.Image)
	}
}

// secretExamples are the example Secrets, one per Redis mode, and the
// variable each gives callgate.
var secretExamples = []struct{ file, variable string }{
	{"secret.example.yaml", "CALLGATE_REDIS_URL"},
	{"redis-cluster.example.yaml", "CALLGATE_REDIS_CLUSTER"},
	{"redis-sentinel.example.yaml", "CALLGATE_REDIS_SENTINEL"},
}

// TestK8sRedisModes: with each example Secret, the pod starts (every key
// it must have is there) with exactly one Redis variable, the example's,
// whose URL go-redis reads as that mode's.
func TestK8sRedisModes(t *testing.T) {
	m := loadManifests(t)
	for _, ex := range secretExamples {
		var sec corev1.Secret
		decodeManifest(t, ex.file, "v1", "Secret", &sec)
		if sec.Name != m.secret.Name || len(sec.Data) > 0 {
			t.Errorf("%s: Secret %q with data %v, want %q with stringData only", ex.file, sec.Name, sec.Data, m.secret.Name)
		}
		for k, v := range sec.StringData {
			if !strings.Contains(v, "REPLACE_ME") {
				t.Errorf("%s: %s=%q is not a placeholder", ex.file, k, v)
			}
		}
		// The environment the kubelet would give the container.
		env := map[string]string{}
		for _, e := range m.container.Env {
			ref := e.ValueFrom
			if ref == nil || ref.SecretKeyRef == nil {
				continue
			}
			v, ok := sec.StringData[ref.SecretKeyRef.Key]
			switch {
			case ok:
				env[e.Name] = v
			case ref.SecretKeyRef.Optional == nil || !*ref.SecretKeyRef.Optional:
				t.Errorf("%s: no key %s, which %s needs: the pod would not start", ex.file, ref.SecretKeyRef.Key, e.Name)
			}
		}
		var set []string
		for _, k := range redisModeVariables {
			if _, ok := env[k]; ok {
				set = append(set, k)
			}
		}
		if !slices.Equal(set, []string{ex.variable}) {
			t.Errorf("%s: the pod gets %v, want exactly %s", ex.file, set, ex.variable)
			continue
		}
		var err error
		switch u := env[ex.variable]; ex.variable {
		case "CALLGATE_REDIS_URL":
			_, err = redis.ParseURL(u)
		case "CALLGATE_REDIS_CLUSTER":
			var o *redis.ClusterOptions
			if o, err = redis.ParseClusterURL(u); err == nil && (o.TLSConfig == nil || len(o.Addrs) < 2) {
				t.Errorf("%s: %s: want rediss:// (managed services require TLS) and several nodes", ex.file, u)
			}
		case "CALLGATE_REDIS_SENTINEL":
			var o *redis.FailoverOptions
			if o, err = redis.ParseFailoverURL(u); err == nil && (o.MasterName == "" || len(o.SentinelAddrs) < 3 || o.Password == "") {
				t.Errorf("%s: %s: want a master name, three Sentinels and the primary's password", ex.file, u)
			}
		}
		if err != nil {
			t.Errorf("%s: %s: %v", ex.file, ex.variable, err)
		}
	}
}
