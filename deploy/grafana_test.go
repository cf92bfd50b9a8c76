package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// metricNames are the metrics callgate exports (GET /metrics), besides the
// Go runtime and process collectors (go_*, process_*).
var metricNames = []string{
	"callgate_connections",
	"callgate_subscriptions",
	"callgate_redis_channels",
	"callgate_events_published_total",
	"callgate_events_delivered_total",
	"callgate_events_dropped_total",
	"callgate_webhook_requests_total",
	"callgate_publish_to_socket_seconds",
	"callgate_send_queue_overflows_total",
	"callgate_redis_reconnects_total",
	"callgate_webhook_unverified_bytes",
	"callgate_webhook_busy_total",
	"callgate_bus_messages_total",
	"callgate_bus_messages_followed_total",
}

// histograms are the metrics of metricNames that are histograms, exported
// as _bucket, _sum and _count series.
var histograms = []string{"callgate_publish_to_socket_seconds"}

// knownMetric reports whether a series name is exported by callgate, and
// returns its metric family.
func knownMetric(name string) (string, bool) {
	if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
		return name, true
	}
	if slices.Contains(metricNames, name) {
		return name, true
	}
	for _, h := range histograms {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if name == h+suffix {
				return h, true
			}
		}
	}
	return "", false
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promToken    = regexp.MustCompile(`[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "inf", "nan"}
)

// promMetrics returns the series names a PromQL expression selects: every
// identifier that is not a function or aggregation (followed by "("), a
// keyword, a number, or inside a label matcher, range or grouping clause.
func promMetrics(expr string) []string {
	expr = promStrings.ReplaceAllString(expr, `""`)
	expr = promMatchers.ReplaceAllString(expr, "{}")
	expr = promRanges.ReplaceAllString(expr, "[]")
	expr = promGrouping.ReplaceAllString(expr, "")
	var out []string
	for _, m := range promToken.FindAllStringSubmatch(expr, -1) {
		tok := m[0]
		if tok[0] >= '0' && tok[0] <= '9' || m[1] != "" || slices.Contains(promKeywords, strings.ToLower(tok)) {
			continue
		}
		out = append(out, tok)
	}
	return out
}

func TestPromMetrics(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (instance) (callgate_connections{instance=~"$instance"})`:                                      {"callgate_connections"},
		`histogram_quantile(0.99, sum by (instance, le) (rate(x_bucket{a="b c"}[$__rate_interval])))`:          {"x_bucket"},
		`rate(a_total[5m]) / ignoring(code) group_left rate(b_total{code=~"5.."}[5m]) > bool 0.5 or vector(1)`: {"a_total", "b_total"},
		`go_goroutines offset 1h * 1e3`: {"go_goroutines"},
	} {
		if got := promMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promMetrics(%q) = %q, want %q", expr, got, want)
		}
	}
}

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *dashDatasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Datasource   *dashDatasource `json:"datasource"`
		Expr         string          `json:"expr"`
		LegendFormat string          `json:"legendFormat"`
		RefID        string          `json:"refId"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

type dashDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	Title         string      `json:"title"`
	UID           string      `json:"uid"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *dashDatasource `json:"datasource"`
			IncludeAll bool            `json:"includeAll"`
			Multi      bool            `json:"multi"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("grafana", "callgate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("callgate-dashboard.json: %v", err)
	}
	return d
}

func allPanels(ps []dashPanel) []dashPanel {
	var out []dashPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// TestDashboardMetrics: every series a panel queries is one callgate
// exports, every exported metric has a panel, and every series is shown
// per instance.
func TestDashboardMetrics(t *testing.T) {
	d := loadDashboard(t)
	used := map[string]bool{}
	quantiles := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			names := promMetrics(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: expression %q selects no metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				family, ok := knownMetric(n)
				if !ok {
					t.Errorf("panel %q: %q is not a metric callgate exports (expression %q)", p.Title, n, tg.Expr)
				}
				used[family] = true
			}
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: expression %q does not follow the $instance variable", p.Title, tg.Expr)
			}
			if !strings.Contains(tg.LegendFormat, "{{instance}}") {
				t.Errorf("panel %q: legend %q does not name the instance", p.Title, tg.LegendFormat)
			}
			if m := regexp.MustCompile(`histogram_quantile\(\s*([0-9.]+)\s*,(.*)$`).FindStringSubmatch(tg.Expr); m != nil {
				if !strings.Contains(m[2], "_bucket") || !strings.Contains(m[2], "rate(") || !regexp.MustCompile(`by \([^)]*\ble\b`).MatchString(m[2]) {
					t.Errorf("panel %q: %q: want histogram_quantile over the rate of _bucket, by le", p.Title, tg.Expr)
				}
				quantiles[m[1]] = true
			}
		}
	}
	for _, m := range metricNames {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	for _, m := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	for _, q := range []string{"0.5", "0.99"} {
		if !quantiles[q] {
			t.Errorf("no panel shows the publish-to-socket latency quantile %s", q)
		}
	}
}

// TestDashboardConnectionsByTransport: the connections panel shows
// WebSockets and Server-Sent Events streams apart, as the transport label
// of callgate_connections tells them.
func TestDashboardConnectionsByTransport(t *testing.T) {
	for _, p := range allPanels(loadDashboard(t).Panels) {
		for _, tg := range p.Targets {
			if slices.Contains(promMetrics(tg.Expr), "callgate_connections") {
				if !regexp.MustCompile(`by \([^)]*\btransport\b`).MatchString(tg.Expr) || !strings.Contains(tg.LegendFormat, "{{transport}}") {
					t.Errorf("panel %q: %q (legend %q) does not show the transports apart", p.Title, tg.Expr, tg.LegendFormat)
				}
				return
			}
		}
	}
	t.Error("no panel shows callgate_connections")
}

// TestDashboardStructure: importable as is, with the Prometheus data source
// chosen by the ${DS_PROMETHEUS} variable.
func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Error("dashboard needs a title and a uid")
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want about 39", d.SchemaVersion)
	}
	vars := map[string]int{}
	for i, v := range d.Templating.List {
		vars[v.Name] = i
	}
	if i, ok := vars["DS_PROMETHEUS"]; !ok || d.Templating.List[i].Type != "datasource" || string(d.Templating.List[i].Query) != `"prometheus"` {
		t.Error(`templating: want a datasource variable DS_PROMETHEUS of type "prometheus"`)
	}
	if i, ok := vars["instance"]; !ok || !d.Templating.List[i].Multi || !d.Templating.List[i].IncludeAll {
		t.Error("templating: want a multi-value instance variable with All")
	}
	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		sources := []*dashDatasource{p.Datasource}
		for _, tg := range p.Targets {
			sources = append(sources, tg.Datasource)
		}
		for _, ds := range sources {
			if ds == nil || ds.Type != "prometheus" || ds.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource %+v, want prometheus ${DS_PROMETHEUS}", p.Title, ds)
			}
		}
	}
}
