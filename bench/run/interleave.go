package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The machine may be shared: other processes can take CPU away in bursts
// that last seconds. Cases that are compared with each other therefore run
// in turn, in short slices, several rounds, so that such a burst falls on
// all of them alike; and every case records who used the CPU meanwhile.

// spec is one case: what to send, to which server, and which answer
// counts. A case with local set does its work inside this process
// instead (the yardsticks measured beside the HTTP cases).
type spec struct {
	key   string
	name  string
	proc  *proc
	conns int
	want  int
	warm  time.Duration // unmeasured lead-in of every slice
	src   func(worker int) source
	local func(d time.Duration) (*outcome, error)
}

// cpuSample is a reading of the CPU time used so far: by the whole
// machine, by the server under test, by this process (the load generator)
// and by the PostgreSQL backends serving the benchmark's databases.
type cpuSample struct {
	at       time.Time
	busy     time.Duration
	server   time.Duration
	self     time.Duration
	postgres map[int]time.Duration
}

// cpuShare is how many CPUs each party kept busy, on average, over a
// span of time.
type cpuShare struct {
	wall                                time.Duration
	busy, server, self, postgres, other time.Duration
}

// readCPU takes a sample; pid is the server's, 0 for none, and pgPIDs
// are the PostgreSQL backends to count.
func readCPU(pid int, pgPIDs []int) (cpuSample, error) {
	s := cpuSample{at: time.Now(), postgres: map[int]time.Duration{}}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	// user nice system idle iowait irq softirq steal: all but idle and
	// iowait are busy.
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("parse /proc/stat: %w", err)
		}
		if i != 3 && i != 4 {
			s.busy += time.Duration(n) * time.Second / clockTicks
		}
	}
	if pid > 0 {
		if s.server, err = cpuTime(pid); err != nil {
			return s, err
		}
	}
	if s.self, err = cpuTime(os.Getpid()); err != nil {
		return s, err
	}
	for _, p := range pgPIDs {
		if d, err := cpuTime(p); err == nil {
			s.postgres[p] = d
		}
	}
	return s, nil
}

// since returns the shares from an earlier sample to s. Backends that
// ended in between are lost: as their time is in busy, it shows as other.
func (s cpuSample) since(early cpuSample) cpuShare {
	sh := cpuShare{wall: s.at.Sub(early.at), busy: s.busy - early.busy,
		server: s.server - early.server, self: s.self - early.self}
	for pid, d := range s.postgres {
		sh.postgres += d - early.postgres[pid]
	}
	sh.other = max(0, sh.busy-sh.server-sh.self-sh.postgres)
	return sh
}

// add sums two shares of consecutive spans.
func (sh cpuShare) add(o cpuShare) cpuShare {
	return cpuShare{wall: sh.wall + o.wall, busy: sh.busy + o.busy,
		server: sh.server + o.server, self: sh.self + o.self,
		postgres: sh.postgres + o.postgres, other: sh.other + o.other}
}

// String gives the average number of CPUs each party used.
func (sh cpuShare) String() string {
	if sh.wall <= 0 {
		return "—"
	}
	c := func(d time.Duration) string {
		return strconv.FormatFloat(d.Seconds()/sh.wall.Seconds(), 'f', 2, 64)
	}
	return c(sh.server) + " / " + c(sh.postgres) + " / " + c(sh.self) + " / " + c(sh.other)
}

// interleave runs the cases in turn, rounds times, each slice a
// rounds-th of the benchmark's duration, and returns one row per case
// with the slices merged. A case that got no wanted answer at all stops
// the benchmark: something is set up wrong and its figures would mean
// nothing.
func (b *bench) interleave(rounds int, specs ...spec) ([]*row, error) {
	rows := make([]*row, len(specs))
	for i, s := range specs {
		rows[i] = &row{name: s.name, conns: s.conns,
			out: &outcome{want: s.want, statuses: map[int]int64{}}}
	}
	slice := b.opts.duration / time.Duration(rounds)
	for range rounds {
		for i, s := range specs {
			pid := 0
			if s.proc != nil {
				pid = s.proc.pid()
			}
			pgPIDs := b.pgPIDs()
			before, err := readCPU(pid, pgPIDs)
			if err != nil {
				return nil, err
			}
			var out *outcome
			if s.local != nil {
				out, err = s.local(slice)
			} else {
				out, err = load{addr: s.proc.addr, conns: s.conns, duration: slice,
					warmup: s.warm, want: s.want, newSrc: s.src}.run()
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			after, err := readCPU(pid, pgPIDs)
			if err != nil {
				return nil, err
			}
			r := rows[i]
			r.out.merge(out)
			r.share = r.share.add(after.since(before))
			if s.local != nil {
				r.cpu += after.self - before.self
			} else {
				r.cpu += after.server - before.server
			}
			r.served += out.requests + out.warm
		}
	}
	for i, r := range rows {
		r.out.sortLatencies()
		o := r.out
		logf("%-58s %8.0f ok/s  p50 %7s ms  p99 %8s ms  errors %s", r.name, o.throughput(),
			ms(o.percentile(50)), ms(o.percentile(99)), errorsText(o, o.want))
		if o.statuses[o.want] == 0 {
			return rows, fmt.Errorf("%s: no request answered %d (statuses %v; the logs are "+
				"in %s)", r.name, o.want, o.statuses, b.work)
		}
		if specs[i].key != "" {
			b.add(specs[i].key, r)
		}
	}
	return rows, nil
}
