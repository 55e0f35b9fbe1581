package main

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPercentile checks the nearest-rank percentile: the smallest value
// with at least p percent of the values at or below it.
func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p100 is the maximum", ms(hundred...), 100, 100 * time.Millisecond},
		{"p99 of 10 is the maximum", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99,
			10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

// TestParseCPUTime checks that utime and stime are found after the command
// name, whatever the name holds, and that malformed lines are errors.
func TestParseCPUTime(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
		bad        bool
	}{
		// utime 250 and stime 50 ticks of 10 ms.
		{"plain", "42 (postgres) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0",
			3 * time.Second, false},
		{"name with spaces and parentheses",
			"7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0", 100 * time.Millisecond,
			false},
		{"short", "7 (x) R 1 2 3", 0, true},
		{"no name", "7 x R", 0, true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 a 3 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUTime(tt.stat)
			if tt.bad {
				if err == nil {
					t.Fatalf("parseCPUTime = %v, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseCPUTime = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestParseGoBenchmarks checks the names (package prefix, no GOMAXPROCS
// suffix), the figures, and the lines that are not results.
func TestParseGoBenchmarks(t *testing.T) {
	out := `goos: linux
pkg: github.com/authsvc/authsvc/internal/password
BenchmarkHash-2   	      60	  20567000 ns/op	19925763 B/op	      34 allocs/op
PASS
pkg: github.com/authsvc/authsvc/internal/session
BenchmarkHashToken-2   	 1000000	       103.5 ns/op
BenchmarkOdd-name-x 	 10	 5 ns/op
ok  	github.com/authsvc/authsvc/internal/session	1.2s
`
	got := parseGoBenchmarks(out)
	want := []goBenchmark{
		{"password.BenchmarkHash", 20567000, 19925763, 34},
		{"session.BenchmarkHashToken", 103.5, -1, -1},
		{"session.BenchmarkOdd-name-x", 5, -1, -1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d benchmarks %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("benchmark %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if b, ok := find(got, "session.BenchmarkHashToken"); !ok || b.perOp() != 103 {
		t.Errorf("find = %+v, %v", b, ok)
	}
	if _, ok := find(got, "BenchmarkHash"); ok {
		t.Error("find matched a name without its package")
	}
}

// TestAppendRequest parses what appendRequest writes with net/http's own
// parser.
func TestAppendRequest(t *testing.T) {
	tests := []struct {
		name, method string
		body         []byte
		wantLength   int64
		wantType     string
	}{
		{"GET without body", http.MethodGet, nil, 0, ""},
		{"POST without body", http.MethodPost, nil, 0, ""},
		{"POST with JSON", http.MethodPost, []byte(`{"code":"123456"}`), 17,
			"application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The buffer's earlier contents must be kept, not overwritten.
			raw := appendRequest([]byte("left over"), "127.0.0.1:1", tt.method, "/v1/x?y=1",
				tt.body, header{"Authorization", "Bearer tok"}, header{"Accept", "image/png"})
			raw = bytes.TrimPrefix(raw, []byte("left over"))
			r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatalf("not a request: %v\n%s", err, raw)
			}
			body, _ := io.ReadAll(r.Body)
			switch {
			case r.Method != tt.method || r.URL.String() != "/v1/x?y=1" || r.Host != "127.0.0.1:1":
				t.Errorf("request line or host: %s %s %s", r.Method, r.URL, r.Host)
			case r.Header.Get("Authorization") != "Bearer tok" ||
				r.Header.Get("Accept") != "image/png":
				t.Errorf("headers: %v", r.Header)
			case r.ContentLength != tt.wantLength || !bytes.Equal(body, tt.body):
				t.Errorf("length %d, body %q", r.ContentLength, body)
			case r.Header.Get("Content-Type") != tt.wantType:
				t.Errorf("content type %q, want %q", r.Header.Get("Content-Type"), tt.wantType)
			}
		})
	}
}

// TestLoad runs the generator against a server that refuses every third
// request and closes the connection after every fifth.
func TestLoad(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if r.Header.Get("Authorization") != "Bearer ok" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if n%5 == 0 {
			w.Header().Set("Connection", "close")
		}
		if n%3 == 0 {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("yes"))
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	out, err := load{addr: host, conns: 4, duration: 300 * time.Millisecond,
		warmup: 50 * time.Millisecond, want: http.StatusOK,
		newSrc: func(int) source {
			return func(buf []byte, _ *rand.Rand) ([]byte, error) {
				return appendRequest(buf, host, "GET", "/", nil,
					header{"Authorization", "Bearer ok"}), nil
			}
		}}.run()
	if err != nil {
		t.Fatal(err)
	}
	// Every answer is counted once, under its status; refusals are the
	// only failures, and closed connections were reopened without error.
	ok, refused := out.statuses[http.StatusOK], out.statuses[http.StatusUnauthorized]
	if out.requests == 0 || ok+refused != out.requests || len(out.statuses) != 2 {
		t.Fatalf("statuses %v for %d requests", out.statuses, out.requests)
	}
	if out.failures != refused || out.transport != 0 {
		t.Errorf("failures %d (transport %d), want %d", out.failures, out.transport, refused)
	}
	// The server may have answered a last request the client stopped
	// reading, never fewer than the client counted.
	if total := out.requests + out.warm; total > served.Load() || out.warm == 0 {
		t.Errorf("%d measured and %d warm-up answers, %d served", out.requests, out.warm,
			served.Load())
	}
	if int64(len(out.latencies)) != out.requests ||
		out.percentile(1) > out.percentile(99) || out.percentile(1) <= 0 {
		t.Errorf("latencies: %d, p1 %v, p99 %v", len(out.latencies), out.percentile(1),
			out.percentile(99))
	}
	if got := out.throughput(); got <= 0 || got > float64(out.requests)/0.3 {
		t.Errorf("throughput %v for %d answers", got, out.requests)
	}
}

// TestLoadExhausted checks that a source that runs out stops its worker
// and marks the outcome, and that every prepared request is answered once.
func TestLoadExhausted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	var next atomic.Int64
	out, err := load{addr: host, conns: 3, duration: 10 * time.Second,
		want: http.StatusCreated,
		newSrc: func(int) source {
			return func(buf []byte, _ *rand.Rand) ([]byte, error) {
				if next.Add(1) > 50 {
					return buf, errExhausted
				}
				return appendRequest(buf, host, "POST", "/", []byte(`{}`)), nil
			}
		}}.run()
	if err != nil {
		t.Fatal(err)
	}
	if !out.exhausted || out.requests != 50 || out.statuses[http.StatusCreated] != 50 ||
		out.failures != 0 {
		t.Fatalf("exhausted %v, %d requests, statuses %v, failures %d", out.exhausted,
			out.requests, out.statuses, out.failures)
	}
	if out.elapsed >= 10*time.Second {
		t.Errorf("ran %v although the work ran out", out.elapsed)
	}
}

// TestMerge checks that slices of one case add up to one outcome.
func TestMerge(t *testing.T) {
	a := &outcome{want: 200, statuses: map[int]int64{}}
	a.merge(&outcome{requests: 2, warm: 1, failures: 1, statuses: map[int]int64{200: 1, 503: 1},
		elapsed: time.Second, latencies: []time.Duration{3, 1}})
	a.merge(&outcome{requests: 1, statuses: map[int]int64{200: 1}, elapsed: time.Second,
		latencies: []time.Duration{2}, exhausted: true})
	a.sortLatencies()
	if a.requests != 3 || a.warm != 1 || a.failures != 1 || !a.exhausted ||
		a.elapsed != 2*time.Second || a.statuses[200] != 2 || a.statuses[503] != 1 {
		t.Fatalf("merged: %+v", a)
	}
	if a.percentile(100) != 3 || a.percentile(1) != 1 || a.throughput() != 1 {
		t.Errorf("latencies %v, throughput %v", a.latencies, a.throughput())
	}
}

// TestCPUShare checks the shares of a two-second span: the machine's busy
// time less the server, this process and PostgreSQL is the other work,
// and a backend that appeared in between counts whole.
func TestCPUShare(t *testing.T) {
	early := cpuSample{at: time.Unix(0, 0), busy: time.Second, server: 100 * time.Millisecond,
		postgres: map[int]time.Duration{1: time.Second}}
	late := cpuSample{at: time.Unix(2, 0), busy: 4 * time.Second,
		server: 1100 * time.Millisecond, self: 500 * time.Millisecond,
		postgres: map[int]time.Duration{1: 1500 * time.Millisecond, 2: 200 * time.Millisecond}}
	sh := late.since(early)
	want := cpuShare{wall: 2 * time.Second, busy: 3 * time.Second, server: time.Second,
		self: 500 * time.Millisecond, postgres: 700 * time.Millisecond,
		other: 800 * time.Millisecond}
	if sh != want {
		t.Fatalf("share %+v, want %+v", sh, want)
	}
	if got := sh.String(); got != "0.50 / 0.35 / 0.25 / 0.40" {
		t.Errorf("String = %q", got)
	}
	if got := sh.add(sh); got.wall != 4*time.Second || got.String() != sh.String() {
		t.Errorf("add: %+v", got)
	}
}
