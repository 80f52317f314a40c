package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/etcdaas/etcdaas/test/testenv"
)

// figure summarises the repetitions of one measurement.
type figure struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

// summarize returns the median, minimum and maximum of samples (at least one).
func summarize(samples []float64) figure {
	s := slices.Clone(samples)
	slices.Sort(s)
	n := len(s)
	median := s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return figure{Median: median, Min: s[0], Max: s[n-1], Samples: samples}
}

// goal is a bound on a ratio: at least (AtLeast) or at most Value.
type goal struct {
	AtLeast bool    `json:"atLeast"`
	Value   float64 `json:"value"`
}

func (g goal) String() string {
	if g.AtLeast {
		return fmt.Sprintf("≥ %g", g.Value)
	}
	return fmt.Sprintf("≤ %g", g.Value)
}

// met reports whether ratio satisfies the goal.
func (g goal) met(ratio float64) bool {
	if g.AtLeast {
		return ratio >= g.Value
	}
	return ratio <= g.Value
}

// comparison is one line of the report: a figure of the subject next to the same figure
// of its peer, measured in the same run, and their ratio (subject median / peer median).
type comparison struct {
	Scenario string  `json:"scenario"`
	Version  string  `json:"version,omitempty"`
	Unit     string  `json:"unit"`
	Subject  string  `json:"subject"`
	Peer     string  `json:"peer"`
	Of       figure  `json:"subjectFigure"`
	PeerOf   figure  `json:"peerFigure"`
	Ratio    float64 `json:"ratio"`
	Goal     *goal   `json:"goal,omitempty"`
	Verdict  string  `json:"verdict,omitempty"`
}

// compare builds the comparison of subject with peer; g may be nil (no goal).
func compare(scenario, version, unit, subject string, of figure, peer string, peerOf figure, g *goal) comparison {
	c := comparison{Scenario: scenario, Version: version, Unit: unit, Subject: subject, Peer: peer, Of: of, PeerOf: peerOf, Goal: g}
	if peerOf.Median <= 0 {
		c.Verdict = "no peer figure"
		return c
	}
	c.Ratio = of.Median / peerOf.Median
	if g != nil {
		c.Verdict = "not met"
		if g.met(c.Ratio) {
			c.Verdict = "met"
		}
	}
	return c
}

// report is what one benchmark writes to _output/bench/NAME.{md,json}.
type report struct {
	Name        string            `json:"name"`
	Time        time.Time         `json:"time"`
	Repetitions int               `json:"repetitions"`
	Settings    map[string]string `json:"settings"`
	Comparisons []comparison      `json:"comparisons"`
}

// markdown renders the report as a table; figures as "median (min–max)".
func (r *report) markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# %s, %s\n\n", r.Name, r.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(&sb, "Median of %d repetitions (min–max). Ratio = subject median / peer median.\n\n", r.Repetitions)
	keys := make([]string, 0, len(r.Settings))
	for k := range r.Settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&sb, "- %s: %s\n", k, r.Settings[k])
	}
	sb.WriteString("\n| scenario | version | subject | figure | peer | peer's figure | ratio | goal | verdict |\n")
	sb.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range r.Comparisons {
		g := ""
		if c.Goal != nil {
			g = c.Goal.String()
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %.2f× | %s | %s |\n", c.Scenario, c.Version,
			c.Subject, formatFigure(c.Of, c.Unit), c.Peer, formatFigure(c.PeerOf, c.Unit), c.Ratio, g, c.Verdict)
	}
	return sb.String()
}

func formatFigure(f figure, unit string) string {
	return fmt.Sprintf("%s %s (%s–%s)", short(f.Median), unit, short(f.Min), short(f.Max))
}

// short prints a figure with three significant digits.
func short(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// write writes the report under dir as NAME.md and NAME.json and returns the markdown.
func (r *report) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	md := r.markdown()
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, r.Name+".md"), []byte(md), 0o644); err != nil {
		return "", err
	}
	return md, os.WriteFile(filepath.Join(dir, r.Name+".json"), append(data, '\n'), 0o644)
}

// benchDir is _output/bench of the repository.
func benchDir() (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "_output", "bench"), nil
}
