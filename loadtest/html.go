package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"html"
	"os"
	"strconv"
	"strings"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/components"
	"github.com/go-echarts/go-echarts/v2/opts"
)

// echartsJS is Apache ECharts 5.4.3 (dist/echarts.min.js from the npm
// package; Apache-2.0, see assets/LICENSE-echarts and NOTICE-echarts), the
// version go-echarts v2.6 is built against. go-echarts ships only the
// templates and links the library from a CDN; inlining it makes the report
// one file that renders offline.
//
//go:embed assets/echarts.min.js
var echartsJS string

// renderHTML renders the report: a text summary and charts of the
// connection ramp, the throughput and the latency percentiles over time.
// assets is "embed" (inline echarts) or a URL prefix to load
// echarts.min.js from.
func renderHTML(s *Summary, assets string) ([]byte, error) {
	page := components.NewPage()
	page.SetPageTitle("Longlink load test: " + s.Scenario)
	page.SetLayout(components.PageFlexLayout)

	x := make([]string, len(s.Series))
	for i, p := range s.Series {
		x[i] = strconv.FormatFloat(p.T, 'f', 1, 64)
	}
	series := func(get func(Point) float64) []opts.LineData {
		d := make([]opts.LineData, len(s.Series))
		for i, p := range s.Series {
			d[i] = opts.LineData{Value: get(p)}
		}
		return d
	}

	ramp := newLine("Connection ramp", "connections, logins/s", x)
	ramp.AddSeries("connections", series(func(p Point) float64 { return float64(p.Conns) })).
		AddSeries("logins/s", series(func(p Point) float64 { return float64(p.Logins) }))
	page.AddCharts(ramp)

	tput := newLine("Throughput", "per second", x)
	tput.AddSeries("requests sent", series(func(p Point) float64 { return float64(p.Requests) })).
		AddSeries("responses", series(func(p Point) float64 { return float64(p.Responses) })).
		AddSeries("deliveries", series(func(p Point) float64 { return float64(p.Deliveries) })).
		AddSeries("PONGs", series(func(p Point) float64 { return float64(p.Pongs) })).
		AddSeries("errors", series(func(p Point) float64 { return float64(p.Errors) }))
	page.AddCharts(tput)

	// One latency chart per kind that has samples, the main one first.
	kinds := []string{s.LatencyKind}
	for k := range numKinds {
		if name := k.String(); name != s.LatencyKind && s.Latencies[name].Count > 0 {
			kinds = append(kinds, name)
		}
	}
	for _, name := range kinds {
		if s.Latencies[name].Count == 0 {
			continue
		}
		// A second without samples is a gap ("-" to echarts), not a zero.
		pct := func(get func(Percentiles) float64) []opts.LineData {
			d := make([]opts.LineData, len(s.Series))
			for i, p := range s.Series {
				if l, ok := p.Latency[name]; ok && l.Count > 0 {
					d[i] = opts.LineData{Value: get(l)}
				} else {
					d[i] = opts.LineData{Value: "-"}
				}
			}
			return d
		}
		l := newLine("Latency percentiles over time: "+name, "ms", x)
		l.AddSeries("p50", pct(func(p Percentiles) float64 { return p.P50 })).
			AddSeries("p90", pct(func(p Percentiles) float64 { return p.P90 })).
			AddSeries("p99", pct(func(p Percentiles) float64 { return p.P99 })).
			AddSeries("p99.9", pct(func(p Percentiles) float64 { return p.P999 })).
			AddSeries("max", pct(func(p Percentiles) float64 { return p.Max }))
		page.AddCharts(l)
	}

	if assets == "embed" {
		// AddCharts merged each chart's CDN link into the page; drop them
		// and inline the library instead. echarts.min.js contains no
		// "</script" (checked by a test), so it cannot end the element.
		page.ClearPresetJSAssets()
		page.AddCustomizedHeaders("<script>" + echartsJS + "</script>")
	} else {
		page.SetAssetsHost(strings.TrimRight(assets, "/") + "/")
	}

	var buf bytes.Buffer
	if err := page.Render(&buf); err != nil {
		return nil, err
	}
	var txt bytes.Buffer
	writeText(&txt, s)
	head := "<h2 style=\"font-family:sans-serif\">Longlink load test: " + html.EscapeString(s.Scenario) + "</h2>\n" +
		"<pre style=\"font-size:13px;margin:0 24px 16px\">" + html.EscapeString(txt.String()) + "</pre>\n"
	out := buf.Bytes()
	i := bytes.Index(out, []byte("<body>"))
	if i < 0 {
		return nil, fmt.Errorf("go-echarts output has no <body>")
	}
	i += len("<body>")
	res := make([]byte, 0, len(out)+len(head)+1)
	res = append(res, out[:i]...)
	res = append(res, '\n')
	res = append(res, head...)
	res = append(res, out[i:]...)
	return res, nil
}

// newLine is a line chart with the report's common options.
func newLine(title, yName string, x []string) *charts.Line {
	l := charts.NewLine()
	l.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{Width: "620px", Height: "360px"}),
		charts.WithTitleOpts(opts.Title{Title: title}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "28px"}),
		charts.WithGridOpts(opts.Grid{Top: "70px", Left: "70px", Right: "30px"}),
		charts.WithXAxisOpts(opts.XAxis{Name: "s", Type: "category"}),
		charts.WithYAxisOpts(opts.YAxis{Name: yName, Type: "value"}),
		charts.WithAnimation(false),
	)
	l.SetXAxis(x)
	return l
}

// writeHTML renders s to path.
func writeHTML(s *Summary, path, assets string) error {
	b, err := renderHTML(s, assets)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
