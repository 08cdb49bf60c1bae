// Package deploy holds what operators deploy beside the gateway: a Grafana
// dashboard (grafana/longlink.json) and Prometheus alert rules
// (prometheus/alerts.yml). Its test keeps them true to the gateway: every
// series they name is one the gateway exports, every label they filter or
// group by is one that series carries, and every status they match is a
// real one. docs/operations.md explains both.
package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
	"go.yaml.in/yaml/v3"
)

// exported returns the gateway's series, each with its label names, from
// a registry fed a snapshot where every section is filled in.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	reg := metrics.NewRegistry(func() metrics.Snapshot {
		return metrics.Snapshot{
			Node: "n", Connections: 1, LoggedIn: 1,
			Kicks:      map[string]uint64{"SLOW_CONSUMER": 1},
			Closes:     map[string]uint64{"slow_consumer": 1},
			Push:       metrics.PushStats{Requests: 1, Unrouted: 1, NoReply: 1},
			Cluster:    metrics.ClusterStats{LinkRequests: 1, LinkFallbacks: 1, RedisErrors: 1},
			Businesses: []metrics.BizStats{{ID: 1, Target: "echo", Requests: 1, Results: map[string]uint64{"OK": 1}, Breaker: "open", LatencyCount: 1}},
			Queues:     []metrics.QueueStats{{Name: "q", Len: 1, Cap: 2, Dropped: 1}},
			ClientRTT:  []metrics.Histogram{{Net: "wifi", Bounds: []float64{1}, Cumulative: []uint64{1}, Count: 1, Sum: 0.1}},
			Heartbeats: metrics.Histogram{Bounds: []float64{30}, Cumulative: []uint64{1}, Count: 1, Sum: 30},
		}
	})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{"up": {"instance", "job"}} // Prometheus' own
	for _, f := range families {
		var labels []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		out[f.GetName()] = labels
	}
	return out
}

var (
	seriesRe   = regexp.MustCompile(`\b((?:longlink|go|process)_[a-z0-9_]+|up)\b(\{[^}]*\})?`)
	matcherRe  = regexp.MustCompile(`([a-z_]+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"`)
	byRe       = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
	addedByPro = []string{"instance", "job"} // labels Prometheus adds to every scraped series
)

// checkExpr checks one PromQL expression against the exported series.
func checkExpr(t *testing.T, where, expr string, series map[string][]string) {
	t.Helper()
	var labels []string
	found := false
	for _, m := range seriesRe.FindAllStringSubmatch(expr, -1) {
		name := m[1]
		have, ok := series[name]
		if !ok {
			for _, suffix := range []string{"_sum", "_count", "_bucket"} {
				if base, cut := strings.CutSuffix(name, suffix); cut {
					have, ok = series[base]
				}
			}
		}
		if !ok {
			t.Errorf("%s: %s is not a series the gateway exports (expr %q)", where, name, expr)
			continue
		}
		found = true
		labels = append(labels, have...)
		if strings.HasSuffix(name, "_bucket") {
			labels = append(labels, "le") // a histogram's buckets carry it
		}
		for _, mm := range matcherRe.FindAllStringSubmatch(m[2], -1) {
			label, value := mm[1], mm[2]
			if !slices.Contains(have, label) && !slices.Contains(addedByPro, label) {
				t.Errorf("%s: %s has no label %q (expr %q)", where, name, label, expr)
			}
			if label == "status" && !validStatus(value) {
				t.Errorf("%s: %q is not a status (expr %q)", where, value, expr)
			}
		}
	}
	if !found {
		t.Errorf("%s: names no series of the gateway (expr %q)", where, expr)
	}
	for _, m := range byRe.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			l = strings.TrimSpace(l)
			if !slices.Contains(labels, l) && !slices.Contains(addedByPro, l) {
				t.Errorf("%s: groups by %q, which none of its series carries (expr %q)", where, l, expr)
			}
		}
	}
}

func validStatus(s string) bool {
	for i := range codec.NumStatus {
		if codec.Status(i).String() == s {
			return true
		}
	}
	return false
}

// TestDashboard: the Grafana dashboard is valid JSON, and every panel's
// queries name exported series with their labels.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/longlink.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string
		Panels []struct {
			Type, Title string
			Targets     []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name       string
				Definition string
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/longlink.json: %v", err)
	}
	series := exported(t)
	queries := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			queries++
			checkExpr(t, "panel "+p.Title, q.Expr, series)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			checkExpr(t, "variable "+v.Name, v.Definition, series)
		}
	}
	if queries < 20 {
		t.Errorf("the dashboard has %d queries; it lost its panels?", queries)
	}
}

// TestAlerts: the alert rules are valid YAML in Prometheus' rule file
// shape, each rule has a name, an expression naming exported series and
// a summary.
func TestAlerts(t *testing.T) {
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				For         string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("prometheus/alerts.yml: %v", err)
	}
	series := exported(t)
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: wants alert, expr and a summary", r)
				continue
			}
			names = append(names, r.Alert)
			checkExpr(t, "alert "+r.Alert, r.Expr, series)
		}
	}
	// The alerts docs/operations.md promises.
	for _, want := range []string{"LonglinkSlowConsumerKicks", "LonglinkBreakerOpen", "LonglinkRedisErrors", "LonglinkUnroutedPushes", "LonglinkSourceLimits", "LonglinkFloods"} {
		if !slices.Contains(names, want) {
			t.Errorf("no alert %s", want)
		}
	}
}
