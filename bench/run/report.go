package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// row is one line of the results table: a case run against authsvc, and
// the floor run it is compared with, if any.
type row struct {
	name    string
	conns   int
	out     *outcome
	cpu     time.Duration // the server's CPU time over the run, warm-up included
	served  int64         // requests the CPU time was spent on
	share   cpuShare      // who used the machine's CPUs meanwhile
	updates string        // sessions table writes during the run, "" if not read
	floor   *row          // the floor case this one is compared with
}

// cpuPerRequest is the service's CPU time per answered request.
func (r *row) cpuPerRequest() time.Duration {
	if r.served == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.served)
}

// verdict is one target of the performance plan, met or missed.
type verdict struct {
	target   string
	measured string
	met      bool
	note     string
}

// report is everything one run found.
type report struct {
	started  time.Time
	command  string
	machine  []string // facts about the machine, one per line
	settings []string // how the services ran
	rows     []*row
	verdicts []verdict
	goBench  []goBenchmark
	notes    []string
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64)
}

// ratio formats a/b, or "—" when b is zero.
func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64)
}

// mib formats bytes in MiB.
func mib(b int64) string {
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB"
}

// errorsText is the failure count followed by the statuses that were not
// the wanted one and any transport errors.
func errorsText(o *outcome, want int) string {
	if o.failures == 0 {
		return "0"
	}
	var parts []string
	// Unwanted statuses in order, each with its count: 12×503.
	codes := make([]int, 0, len(o.statuses))
	for s := range o.statuses {
		if s != want {
			codes = append(codes, s)
		}
	}
	slices.Sort(codes)
	for _, s := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", o.statuses[s], s))
	}
	if o.transport > 0 {
		parts = append(parts, fmt.Sprintf("%d×conn", o.transport))
	}
	return fmt.Sprintf("%d (%s)", o.failures, strings.Join(parts, ", "))
}

// table writes the results table in Markdown.
func (rep *report) table(w io.Writer) {
	fmt.Fprintln(w, "| case | conns | ok/s | p50 ms | p99 ms | errors | CPU µs/req "+
		"| CPUs: server / PostgreSQL / load / other | sessions writes "+
		"| ok/s ÷ floor | p99 ÷ floor |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|---|--:|---|---|--:|--:|")
	for _, r := range rep.rows {
		o := r.out
		name := r.name
		if o.exhausted {
			name += " (ran out of prepared requests)"
		}
		// Rows measured at the same time as another have no CPU figure of
		// their own.
		cpu := "—"
		if r.cpu > 0 {
			cpu = strconv.FormatFloat(float64(r.cpuPerRequest())/1e3, 'f', 0, 64)
		}
		cells := []string{name, strconv.Itoa(r.conns),
			strconv.FormatFloat(o.throughput(), 'f', 0, 64),
			ms(o.percentile(50)), ms(o.percentile(99)), errorsText(o, o.want), cpu,
			r.share.String(), or(r.updates, "—"), "—", "—"}
		// Only the cases with a floor counterpart get the two ratios.
		if f := r.floor; f != nil {
			cells[9] = ratio(o.throughput(), f.out.throughput())
			cells[10] = ratio(float64(o.percentile(99)), float64(f.out.percentile(99)))
		}
		fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
	}
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// write renders the whole report in Markdown.
func (rep *report) write(w io.Writer) {
	fmt.Fprintf(w, "# authsvc benchmark, %s\n\n", rep.started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Command: `%s`\n\n", rep.command)
	for _, m := range rep.machine {
		fmt.Fprintf(w, "- %s\n", m)
	}
	fmt.Fprintln(w)
	for _, s := range rep.settings {
		fmt.Fprintf(w, "- %s\n", s)
	}
	fmt.Fprintln(w)
	rep.table(w)
	fmt.Fprintln(w)
	// Each verdict names the target as the plan states it, the figures it
	// was judged on, and any note on how.
	fmt.Fprintln(w, "## Targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured | result |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, v := range rep.verdicts {
		res := "met"
		if !v.met {
			res = "MISSED"
		}
		if v.note != "" {
			res += "; " + v.note
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", v.target, v.measured, res)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Go benchmarks (same run, before the services started)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| benchmark | time/op | B/op | allocs/op |")
	fmt.Fprintln(w, "|---|--:|--:|--:|")
	for _, b := range rep.goBench {
		d := b.perOp()
		if d >= time.Millisecond {
			d = d.Round(time.Microsecond)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", b.name, d, count(b.bytesPerOp),
			count(b.allocsPerOp))
	}
	if len(rep.notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "## Notes")
		fmt.Fprintln(w)
		for _, n := range rep.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// count formats a benchmark figure that may be missing (-1).
func count(v float64) string {
	if v < 0 {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}
