package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// errExhausted is returned by a request source that has no more prepared
// work (fresh TOTP codes, partial sessions): the worker stops early.
var errExhausted = errors.New("prepared requests exhausted")

// source writes the next request of a case, as raw HTTP/1.1, into buf and
// returns it. Each worker calls its own source from one goroutine; rng is
// the worker's own.
type source func(buf []byte, rng *rand.Rand) ([]byte, error)

// load is one closed-loop run: conns connections, each sending its next
// request as soon as the previous answer has been read, for duration.
type load struct {
	addr     string
	conns    int
	duration time.Duration
	warmup   time.Duration // requests sent before the clock starts, not counted
	want     int           // the status that counts as success
	newSrc   func(worker int) source
}

// outcome is what a run measured.
type outcome struct {
	want      int   // the status that counts as success
	requests  int64 // answered, within the measured window
	warm      int64 // answered during the warm-up
	failures  int64 // wrong status or transport error
	statuses  map[int]int64
	transport int64 // connection errors among failures
	exhausted bool  // a source ran out of prepared requests
	elapsed   time.Duration
	latencies []time.Duration // of every answered request, sorted
}

// throughput is successful answers per second over the measured window.
func (o *outcome) throughput() float64 {
	if o.elapsed <= 0 {
		return 0
	}
	return float64(o.statuses[o.want]) / o.elapsed.Seconds()
}

// merge adds the figures of p, a later slice of the same case, to o. The
// latencies are sorted again by sortLatencies.
func (o *outcome) merge(p *outcome) {
	o.requests += p.requests
	o.warm += p.warm
	o.failures += p.failures
	o.transport += p.transport
	o.exhausted = o.exhausted || p.exhausted
	o.elapsed += p.elapsed
	o.latencies = append(o.latencies, p.latencies...)
	if o.statuses == nil {
		o.statuses = map[int]int64{}
	}
	for s, n := range p.statuses {
		o.statuses[s] += n
	}
}

// sortLatencies puts the latencies in order for percentile.
func (o *outcome) sortLatencies() { slices.Sort(o.latencies) }

// percentile returns the p-th percentile (0 < p <= 100) of the latencies
// by the nearest-rank method, 0 without any.
func (o *outcome) percentile(p float64) time.Duration {
	return percentile(o.latencies, p)
}

// percentile is the nearest-rank percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(float64(n)*p/100 + 0.999999999)
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// workerResult is what one connection's loop collected.
type workerResult struct {
	lat       []time.Duration
	warm      int64
	statuses  map[int]int64
	failures  int64
	transport int64
	exhausted bool
}

// run dials every connection first, then lets all of them loop until the
// window ends.
func (l load) run() (*outcome, error) {
	// Dialling first keeps connection set-up out of the measured window,
	// as a gateway's kept-alive connections would.
	conns := make([]net.Conn, l.conns)
	for i := range conns {
		c, err := net.Dial("tcp", l.addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return nil, fmt.Errorf("dial %s: %w", l.addr, err)
		}
		conns[i] = c
	}

	start := time.Now()
	measureFrom := start.Add(l.warmup)
	stop := measureFrom.Add(l.duration)
	results := make([]workerResult, l.conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.worker(i, conns[i], measureFrom, stop)
		}()
	}
	wg.Wait()
	end := time.Now()

	o := &outcome{want: l.want, statuses: map[int]int64{}, elapsed: end.Sub(measureFrom)}
	for _, r := range results {
		o.latencies = append(o.latencies, r.lat...)
		for s, n := range r.statuses {
			o.statuses[s] += n
		}
		o.failures += r.failures
		o.warm += r.warm
		o.transport += r.transport
		o.exhausted = o.exhausted || r.exhausted
	}
	o.requests = int64(len(o.latencies))
	slices.Sort(o.latencies)
	return o, nil
}

// worker is one connection's loop. It reconnects after a transport error
// or an answer that closes the connection.
func (l load) worker(id int, conn net.Conn, measureFrom, stop time.Time) workerResult {
	res := workerResult{statuses: map[int]int64{}}
	src := l.newSrc(id)
	rng := rand.New(rand.NewPCG(uint64(id)+1, uint64(time.Now().UnixNano())))
	br := bufio.NewReaderSize(conn, 16<<10)
	var buf []byte
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()

	for {
		t0 := time.Now()
		if !t0.Before(stop) {
			return res
		}
		var err error
		buf, err = src(buf[:0], rng)
		if errors.Is(err, errExhausted) {
			res.exhausted = true
			return res
		}
		if err != nil {
			res.failures++
			return res
		}
		if conn == nil {
			if conn, err = net.Dial("tcp", l.addr); err != nil {
				res.failures++
				res.transport++
				time.Sleep(10 * time.Millisecond)
				continue
			}
			br.Reset(conn)
		}
		// A request counts if it was sent inside the window, whenever its
		// answer came.
		status, keep, err := roundTrip(conn, br, buf)
		measured := !t0.Before(measureFrom)
		if err != nil {
			conn.Close()
			conn = nil
			if measured {
				res.failures++
				res.transport++
			}
			continue
		}
		if !keep {
			conn.Close()
			conn = nil
		}
		if !measured {
			res.warm++
			continue
		}
		res.lat = append(res.lat, time.Since(t0))
		res.statuses[status]++
		if status != l.want {
			res.failures++
		}
	}
}

// roundTrip writes one request and reads its whole answer. keep reports
// whether the connection may carry the next request.
func roundTrip(conn net.Conn, br *bufio.Reader, req []byte) (status int, keep bool,
	err error) {
	if _, err := conn.Write(req); err != nil {
		return 0, false, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, fmt.Errorf("read answer: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, false, fmt.Errorf("read body: %w", err)
	}
	return resp.StatusCode, !resp.Close, nil
}

// header is one request header line.
type header struct{ name, value string }

// appendRequest appends a raw HTTP/1.1 request to buf. A body, when given,
// is sent as application/json.
func appendRequest(buf []byte, host, method, path string, body []byte,
	headers ...header) []byte {
	buf = append(buf, method...)
	buf = append(buf, ' ')
	buf = append(buf, path...)
	buf = append(buf, " HTTP/1.1\r\nHost: "...)
	buf = append(buf, host...)
	buf = append(buf, "\r\nUser-Agent: authsvc-bench\r\n"...)
	for _, h := range headers {
		buf = append(buf, h.name...)
		buf = append(buf, ": "...)
		buf = append(buf, h.value...)
		buf = append(buf, "\r\n"...)
	}
	// A POST without a body still says so, as HTTP/1.1 asks.
	if body != nil || method == http.MethodPost {
		if len(body) > 0 {
			buf = append(buf, "Content-Type: application/json\r\n"...)
		}
		buf = fmt.Appendf(buf, "Content-Length: %d\r\n", len(body))
	}
	buf = append(buf, "\r\n"...)
	return append(buf, body...)
}
