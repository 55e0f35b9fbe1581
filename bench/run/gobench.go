package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// goBenchmark is one line of `go test -bench` output.
type goBenchmark struct {
	name        string // without the -GOMAXPROCS suffix
	nsPerOp     float64
	bytesPerOp  float64 // -1 when not reported
	allocsPerOp float64 // -1 when not reported
}

// perOp returns the time of one operation.
func (b goBenchmark) perOp() time.Duration { return time.Duration(b.nsPerOp) }

// runGoBenchmarks runs the benchmarks matching pattern in pkgs once, with
// benchtime (a duration or NNx), and returns them in the order they ran,
// named package.Benchmark.
func runGoBenchmarks(ctx context.Context, pattern, benchtime string, pkgs ...string) (
	[]goBenchmark, error) {
	args := []string{"test", "-run", "^$", "-bench", pattern, "-benchmem",
		"-benchtime", benchtime, "-count", "1", "-p", "1"}
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test -bench %s: %w\n%s", pattern, err, out.String())
	}
	found := parseGoBenchmarks(out.String())
	if len(found) == 0 {
		return nil, fmt.Errorf("go test -bench %s: no benchmark ran\n%s", pattern,
			out.String())
	}
	return found, nil
}

// parseGoBenchmarks reads the result lines of `go test -bench` output,
// naming each after the last element of the package it ran in.
func parseGoBenchmarks(out string) []goBenchmark {
	var found []goBenchmark
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "pkg: "); ok {
			pkg = p[strings.LastIndexByte(p, '/')+1:]
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || f[3] != "ns/op" {
			continue
		}
		ns, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			continue
		}
		// BenchmarkX-8 ran with GOMAXPROCS 8; the suffix is dropped so
		// that names are the same on every machine.
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if pkg != "" {
			name = pkg + "." + name
		}
		b := goBenchmark{name: name, nsPerOp: ns, bytesPerOp: -1, allocsPerOp: -1}
		// With -benchmem, value and unit pairs follow the time.
		for i := 4; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "B/op":
				b.bytesPerOp = v
			case "allocs/op":
				b.allocsPerOp = v
			}
		}
		found = append(found, b)
	}
	return found
}

// find returns the benchmark named name among found.
func find(found []goBenchmark, name string) (goBenchmark, bool) {
	for _, b := range found {
		if b.name == name {
			return b, true
		}
	}
	return goBenchmark{}, false
}
