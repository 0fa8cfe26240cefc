package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/vxmesh/vxmesh/internal/atomicfile"
)

// The plot: an SVG written by the run itself (no plotting dependency) of
// gossip convergence against members and push/pull size against
// endpoints, from the figures of the scale and cost areas.

// Series is one line of a panel.
type Series struct {
	Name   string
	Points [][2]float64 // x, y
}

// Panel is one chart.
type Panel struct {
	Title, XLabel, YLabel string
	Series                []Series
}

// Panel geometry, in SVG user units.
const (
	panelW, panelH = 440, 300
	padL, padR     = 64, 16
	padT, padB     = 36, 48
)

var seriesColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"}

// writePlot writes the run's plot to opts.Plot, when asked and when the
// run has figures for it.
func (r *Runner) writePlot(rep *Report) error {
	if r.opts.Plot == "" {
		return nil
	}
	panels := plotPanels(r.scale, r.cost)
	if len(panels) == 0 {
		r.logf("plot: no figures from the scale or cost areas; %s not written", r.opts.Plot)
		return nil
	}
	var b strings.Builder
	WriteSVG(&b, fmt.Sprintf("%s — %s, %d CPUs, load %s", rep.Command, rep.Started.UTC().Format("2006-01-02"), rep.Machine.CPUs, rep.Load), panels)
	if err := atomicfile.Write(r.opts.Plot, []byte(b.String()), 0o644); err != nil {
		return err
	}
	r.logf("plot written to %s", r.opts.Plot)
	return nil
}

func plotPanels(scale []scalePoint, cost []costPoint) []Panel {
	var out []Panel
	if len(scale) > 0 {
		p50, p99 := Series{Name: "vxmesh p50"}, Series{Name: "vxmesh p99"}
		b50, b99 := Series{Name: "memberlist defaults p50"}, Series{Name: "memberlist defaults p99"}
		idle, bidle := Series{Name: "vxmesh"}, Series{Name: "memberlist defaults"}
		for _, s := range scale {
			x := float64(s.Members)
			p50.Points = append(p50.Points, [2]float64{x, Ms(s.P50)})
			p99.Points = append(p99.Points, [2]float64{x, Ms(s.P99)})
			if s.BaseFormed {
				b50.Points = append(b50.Points, [2]float64{x, Ms(s.BaseP50)})
				b99.Points = append(b99.Points, [2]float64{x, Ms(s.BaseP99)})
				bidle.Points = append(bidle.Points, [2]float64{x, s.BaseIdleBps})
			}
			idle.Points = append(idle.Points, [2]float64{x, s.IdleBps})
		}
		out = append(out,
			Panel{Title: "gossip convergence", XLabel: "members", YLabel: "ms", Series: []Series{p50, p99, b50, b99}},
			Panel{Title: "idle gossip traffic", XLabel: "members", YLabel: "B/s per member", Series: []Series{idle, bidle}})
	}
	// Push/pull size against the endpoints in the cluster: the cost area
	// measures it directly; the scale area's clusters hold members x 10.
	var pps []Series
	if len(cost) > 0 {
		pp := Series{Name: "push/pull payload (cost area)"}
		for _, c := range cost {
			pp.Points = append(pp.Points, [2]float64{float64(c.Endpoints), float64(c.Bytes) / 1024})
		}
		pps = append(pps, pp)
	}
	if sp := scalePushPull(scale); len(sp.Points) > 0 {
		pps = append(pps, sp)
	}
	if len(pps) > 0 {
		out = append(out, Panel{Title: "push/pull size", XLabel: "cluster endpoints", YLabel: "KiB", Series: pps})
	}
	return out
}

// scalePushPull is the largest push/pull payload of each scale run
// against the endpoints its cluster held.
func scalePushPull(scale []scalePoint) Series {
	sp := Series{Name: "push/pull payload (scale runs)"}
	for _, s := range scale {
		if s.StateBytes > 0 {
			sp.Points = append(sp.Points, [2]float64{float64(s.Endpoints), float64(s.StateBytes) / 1024})
		}
	}
	return sp
}

// WriteSVG writes panels side by side under a title.
func WriteSVG(w io.Writer, title string, panels []Panel) {
	width, height := panelW*len(panels), panelH+24
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="8" y="16" font-size="12">%s</text>`+"\n", esc(title))
	for i, p := range panels {
		fmt.Fprintf(w, `<g transform="translate(%d,24)">`+"\n", i*panelW)
		writePanel(w, p)
		fmt.Fprintln(w, "</g>")
	}
	fmt.Fprintln(w, "</svg>")
}

func writePanel(w io.Writer, p Panel) {
	xmax, ymax := 0.0, 0.0
	for _, s := range p.Series {
		for _, pt := range s.Points {
			xmax, ymax = math.Max(xmax, pt[0]), math.Max(ymax, pt[1])
		}
	}
	xt, yt := niceTicks(xmax), niceTicks(ymax)
	x0, y0 := float64(padL), float64(panelH-padB)
	pw, ph := float64(panelW-padL-padR), float64(panelH-padT-padB)
	sx := func(v float64) float64 { return x0 + v/xt[len(xt)-1]*pw }
	sy := func(v float64) float64 { return y0 - v/yt[len(yt)-1]*ph }
	fmt.Fprintf(w, `<text x="%d" y="%d" font-size="12" font-weight="bold">%s</text>`+"\n", padL, padT-18, esc(p.Title))
	fmt.Fprintf(w, `<path d="M%.1f %.1fV%.1fH%.1f" stroke="black" fill="none"/>`+"\n", x0, y0-ph, y0, x0+pw)
	for _, t := range xt {
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", sx(t), y0+14, tickLabel(t))
	}
	for _, t := range yt {
		fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, x0+pw, sy(t), sy(t))
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-4, sy(t)+4, tickLabel(t))
	}
	fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x0+pw/2, panelH-padB+32, esc(p.XLabel))
	fmt.Fprintf(w, `<text transform="translate(14,%.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", y0-ph/2, esc(p.YLabel))
	for i, s := range p.Series {
		color := seriesColors[i%len(seriesColors)]
		var d strings.Builder
		for j, pt := range s.Points {
			cmd := "L"
			if j == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f", cmd, sx(pt[0]), sy(pt[1]))
			fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", sx(pt[0]), sy(pt[1]), color)
		}
		fmt.Fprintf(w, `<path d="%s" stroke="%s" stroke-width="1.5" fill="none"/>`+"\n", d.String(), color)
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", x0+8, y0-ph+12+float64(i)*14, color, esc(s.Name))
	}
}

// niceTicks returns 0 and evenly spaced round ticks up to at least max
// (a step of 1, 2 or 5 times a power of ten, about five ticks).
func niceTicks(max float64) []float64 {
	if max <= 0 || math.IsNaN(max) || math.IsInf(max, 0) {
		return []float64{0, 1}
	}
	raw := max / 5
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step := pow * 10
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= raw {
			step = m * pow
			break
		}
	}
	var out []float64
	for i := 0; ; i++ {
		v := float64(i) * step
		out = append(out, v)
		if v >= max {
			return out
		}
	}
}

// tickLabel prints whole ticks without decimals ("10", "2,000").
func tickLabel(v float64) string {
	if v == math.Trunc(v) {
		return group(strconv.FormatFloat(v, 'f', 0, 64))
	}
	return sig3(v)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// checkPlotPath fails early, before the run spends its time, when the
// plot could not be written.
func checkPlotPath(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.CreateTemp(dirOf(path), ".vxmesh-bench-plot-*")
	if err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:max(i, 1)]
	}
	return "."
}
