// Command run is authsvc's performance benchmark. In one run it builds
// authsvc and the floor server (see bench/floor), creates a throwaway
// PostgreSQL database, seeds it, drives both servers with its own
// closed-loop HTTP/1.1 load generator, checks the targets of the
// performance plan, prints one Markdown report and writes it to
// bench/results/<timestamp>.md. The database is dropped at the end.
//
// Usage (what `make bench` runs):
//
//	go run ./bench/run [-duration 10s] [-conns 64] [-db postgres://...]
package main

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/authsvc/authsvc/internal/password"
	"github.com/authsvc/authsvc/internal/secretbox"
)

// defaultServer is the PostgreSQL server the benchmark creates its
// database on.
const defaultServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Sizes of the seeded sets.
const (
	loginUsers  = 1000 // accounts the login case cycles through
	setupUsers  = 1000 // full sessions the setup case cycles through
	sqliteUsers = 1000 // accounts holding the SQLite sessions
	readyTrials = 5    // fresh embedded starts timed
	mixedLogins = 500  // concurrent logins of the memory test
)

// benchPassword is every seeded account's password, and the password of
// every sign-up. It passes authsvc's policy.
const benchPassword = "violet-anchor-17-tundra"

// options are the command line.
type options struct {
	duration   time.Duration // measured time of each case
	conns      int           // connections of each case
	server     string        // PostgreSQL server the databases are made on
	outDir     string        // where the report is written
	authsvcBin string        // prebuilt binaries, "" to build them
	floorBin   string
	logLevel   string // AUTHSVC_LOG_LEVEL, "" for authsvc's default
	small      int    // sessions of the authorize cases
	large      int    // sessions of the large-table case
	verifyRate int    // partial sessions per second of duration
	rounds     int    // slices of the cases run in turn
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each case")
	flag.IntVar(&o.conns, "conns", 64, "concurrent connections of each case")
	flag.StringVar(&o.server, "db", defaultServer, "PostgreSQL server to create the database on")
	flag.StringVar(&o.outDir, "out", "bench/results", "folder of the result files")
	flag.StringVar(&o.authsvcBin, "authsvc", "", "authsvc binary (default: build one)")
	flag.StringVar(&o.floorBin, "floor", "", "floor binary (default: build one)")
	flag.StringVar(&o.logLevel, "log-level", "",
		"AUTHSVC_LOG_LEVEL (default: authsvc's own default, info)")
	flag.IntVar(&o.small, "sessions", 10_000, "live sessions of the authorize cases")
	flag.IntVar(&o.large, "sessions-large", 1_000_000, "live sessions of the large case")
	flag.IntVar(&o.verifyRate, "verify-rate", 4000,
		"partial sessions prepared per second of -duration for the verify case")
	flag.IntVar(&o.rounds, "rounds", 5,
		"slices each compared case is cut into, run in turn with the cases it is "+
			"compared with")
	flag.Parse()
	if o.rounds < 1 || o.conns < 1 || o.duration <= 0 || o.small < 1 || o.large <= o.small {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -conns, -duration and -sessions must be "+
			"positive, and -sessions-large larger than -sessions")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{opts: o, rep: &report{started: time.Now(),
		command: "go run ./bench/run " + strings.Join(os.Args[1:], " ")}}
	err := b.run(ctx)
	if b.rep.rows != nil || b.rep.verdicts != nil {
		if werr := b.save(); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is the state of one run.
type bench struct {
	opts    options
	rep     *report
	work    string // scratch folder, removed at the end
	keys    *secretbox.Keyring
	keyText string
	pwHash  string
	tag     string // makes this run's sign-up emails unique

	pg      *pgBench // the database of most cases
	authsvc *proc    // authsvc on pg, or on SQLite at the end
	floor   *proc
	pgLarge *pgBench // the database with a million sessions
	large   *proc    // authsvc on pgLarge

	rows map[string]*row
}

// logf reports progress on stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n",
		append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// run goes through every phase; the database and the servers go away
// whatever happens.
func (b *bench) run(ctx context.Context) (err error) {
	b.rows = map[string]*row{}
	b.work, err = os.MkdirTemp("", "authsvc-bench-")
	if err != nil {
		return fmt.Errorf("scratch folder: %w", err)
	}
	defer os.RemoveAll(b.work)
	// The scratch folder's random suffix keeps sign-up emails of two runs
	// apart, should they share a database server.
	b.tag = filepath.Base(b.work)[len("authsvc-bench-"):]
	defer func() {
		b.authsvc.stop()
		b.floor.stop()
		b.large.stop()
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, pg := range []*pgBench{b.pg, b.pgLarge} {
			if pg == nil {
				continue
			}
			if derr := pg.drop(cctx); derr != nil {
				err = errors.Join(err, derr)
			} else {
				logf("dropped database %s", pg.name)
			}
		}
	}()

	// authsvc runs with this key, and the TOTP secrets seeded for verify
	// are sealed with it, as authsvc would have sealed them.
	key := make([]byte, secretbox.KeySize)
	crand.Read(key)
	b.keyText = base64.StdEncoding.EncodeToString(key)
	if b.keys, err = secretbox.NewKeyring(key); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	// One real hash serves every seeded account: login verifies it with
	// the same parameters as a stored hash of its own.
	hasher := password.NewHasher(password.DefaultParams(), 1, 0)
	if b.pwHash, err = hasher.Hash(ctx, benchPassword); err != nil {
		return fmt.Errorf("hash the benchmark password: %w", err)
	}

	phases := []struct {
		name string
		f    func(context.Context) error
	}{
		{"machine", b.machine},
		{"Go benchmarks", b.goBenchmarks},
		{"build", b.build},
		{"embedded store start-up", b.embeddedStartup},
		{"PostgreSQL start-up", b.postgresStartup},
		{"authorize: writes of sessions due a write", b.authorizeWrites},
		{"authorize and session against the floor", b.authorizeCases},
		{"second factor, setup, login and sign-up", b.writeCases},
		{"memory under concurrent logins", b.loginMemory},
		{"10 000 against 1 000 000 sessions", b.largeTable},
		{"embedded store session check", b.embeddedCase},
	}
	// Each phase builds on the seeding of the ones before it, so the first
	// failure ends the run; the report keeps what was measured.
	for _, p := range phases {
		if err := ctx.Err(); err != nil {
			return err
		}
		logf("== %s", p.name)
		if err := p.f(ctx); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	b.judge()
	return nil
}

// save prints the report and writes it to the results folder.
func (b *bench) save() error {
	var buf bytes.Buffer
	b.rep.write(&buf)
	os.Stdout.Write(buf.Bytes())
	if err := os.MkdirAll(b.opts.outDir, 0o755); err != nil {
		return fmt.Errorf("results folder: %w", err)
	}
	path := filepath.Join(b.opts.outDir,
		b.rep.started.UTC().Format("20060102T150405Z")+".md")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	logf("results written to %s", path)
	return nil
}

// machine records what the figures were measured on.
func (b *bench) machine(ctx context.Context) error {
	model := "unknown"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok &&
				strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	source := "not a git checkout"
	if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty",
		"--abbrev=12").Output(); err == nil {
		source = "commit " + strings.TrimSpace(string(out))
	}
	b.rep.machine = append(b.rep.machine, "Source: "+source,
		fmt.Sprintf("CPUs (nproc): %d, model: %s", runtime.NumCPU(), model),
		"Kernel: Linux "+strings.TrimSpace(string(kernel)),
		"Go: "+runtime.Version())
	return nil
}

// goBenchmarks runs the micro-benchmarks the targets are measured against,
// on a machine that is otherwise idle.
func (b *bench) goBenchmarks(ctx context.Context) error {
	found, err := runGoBenchmarks(ctx,
		"^Benchmark(Hash|HashToken|Validate|ValidateParallel|Verify|KeyURI|QRCodePNG|"+
			"Seal|Open)$", "1s",
		"./internal/password", "./internal/session", "./internal/twofactor",
		"./internal/secretbox")
	if err != nil {
		return err
	}
	b.rep.goBench = found
	return nil
}

// build compiles both servers unless given, and weighs the stripped
// authsvc binary.
func (b *bench) build(ctx context.Context) error {
	if b.opts.authsvcBin == "" {
		b.opts.authsvcBin = filepath.Join(b.work, "authsvc")
		if err := build(ctx, "./cmd/authsvc", b.opts.authsvcBin, true); err != nil {
			return err
		}
	}
	if b.opts.floorBin == "" {
		b.opts.floorBin = filepath.Join(b.work, "floor")
		if err := build(ctx, "./bench/floor", b.opts.floorBin, true); err != nil {
			return err
		}
	}
	// The binary weighed is the one measured, built as make build does.
	st, err := os.Stat(b.opts.authsvcBin)
	if err != nil {
		return fmt.Errorf("authsvc binary: %w", err)
	}
	size := st.Size()
	b.rep.verdicts = append(b.rep.verdicts, verdict{
		target:   "stripped binary < 25 MB",
		measured: fmt.Sprintf("%d bytes (%.1f MB, %s)", size, float64(size)/1e6, mib(size)),
		met:      size < 25_000_000,
		note:     "CGO_ENABLED=0, -trimpath, -ldflags=\"-s -w\"",
	})
	return nil
}

// authsvcEnv is the environment authsvc runs with in every case.
func (b *bench) authsvcEnv(addr, dbURL string) []string {
	env := []string{
		"AUTHSVC_ADDR=" + addr,
		"AUTHSVC_DATABASE_URL=" + dbURL,
		// The sign-up case comes from one address; the default of 30 a
		// minute would answer it 429 after the first 30.
		"AUTHSVC_SIGNUPS_PER_IP=1000000",
	}
	if strings.HasPrefix(dbURL, "postgres") {
		env = append(env, "AUTHSVC_ENCRYPTION_KEY="+b.keyText)
	}
	if b.opts.logLevel != "" {
		env = append(env, "AUTHSVC_LOG_LEVEL="+b.opts.logLevel)
	}
	return env
}

// startAuthsvc starts authsvc on dbURL, logging to a file in the scratch
// folder.
func (b *bench) startAuthsvc(dbURL, logName string) (*proc, time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, 0, err
	}
	return start("authsvc", b.opts.authsvcBin, addr, "/readyz", http.StatusOK,
		filepath.Join(b.work, logName), b.authsvcEnv(addr, dbURL))
}

// embeddedStartup times authsvc from fork to a 200 on /readyz on a fresh
// embedded database (migrations and key generation included), and reads
// its idle RSS.
func (b *bench) embeddedStartup(ctx context.Context) error {
	// Each trial gets a new folder: no database file, no key file, so the
	// migrations and the key generation are part of every start.
	var times []time.Duration
	var rss int64
	for i := range readyTrials {
		dir := filepath.Join(b.work, fmt.Sprintf("fresh%d", i))
		p, took, err := b.startAuthsvc("sqlite:"+filepath.Join(dir, "authsvc.db"),
			fmt.Sprintf("fresh%d.log", i))
		if err != nil {
			return err
		}
		times = append(times, took)
		if i == readyTrials-1 {
			time.Sleep(2 * time.Second)
			rss, _, err = memory(p.pid())
		}
		p.stop()
		if err != nil {
			return err
		}
	}
	slices.Sort(times)
	median := times[len(times)/2]
	b.rep.verdicts = append(b.rep.verdicts,
		verdict{
			target: "start-to-ready on a fresh embedded DB < 300 ms",
			measured: fmt.Sprintf("median %s of %d (min %s, max %s)", ms(median)+" ms",
				readyTrials, ms(times[0])+" ms", ms(times[len(times)-1])+" ms"),
			met:  median < 300*time.Millisecond,
			note: "fork to the first 200 of /readyz, polled every millisecond",
		},
		verdict{
			target:   "idle RSS < 30 MiB (embedded store)",
			measured: mib(rss), met: rss < 30<<20,
			note: "VmRSS 2 s after start-up",
		})
	return nil
}

// postgresStartup creates the database, starts authsvc on it (which
// migrates it) and reads the idle RSS.
func (b *bench) postgresStartup(ctx context.Context) error {
	pg, err := createDatabase(ctx, b.opts.server)
	if err != nil {
		return err
	}
	b.pg = pg
	logf("created database %s", pg.name)
	b.authsvc, _, err = b.startAuthsvc(pg.url, "authsvc-postgres.log")
	if err != nil {
		return err
	}
	if err := pg.connect(ctx); err != nil {
		return err
	}
	var version, buffers string
	err = pg.conn.QueryRow(ctx, "SELECT version(), current_setting('shared_buffers')").
		Scan(&version, &buffers)
	if err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	b.rep.machine = append(b.rep.machine, "PostgreSQL: "+version+
		", on the same machine, shared_buffers "+buffers)
	// Idle: after start-up work such as the first pool connections, before
	// any request.
	time.Sleep(2 * time.Second)
	rss, _, err := memory(b.authsvc.pid())
	if err != nil {
		return err
	}
	level := b.opts.logLevel
	if level == "" {
		level = "info (the default: one JSON line per request)"
	}
	b.rep.settings = append(b.rep.settings,
		"authsvc: stripped static build, AUTHSVC_LOG_LEVEL "+level+
			", log written to a file; pool of 10 connections (the default); "+
			"AUTHSVC_SIGNUPS_PER_IP=1000000, everything else default",
		"floor: bench/floor, net/http and one primary-key join through pgxpool, "+
			"10 connections, no logging",
		fmt.Sprintf("load: bench/run's own Go HTTP/1.1 generator on the same machine, "+
			"closed loop, %d connections, %s per case. Cases compared with each other "+
			"run in turn in %d slices each; the read-only ones warm up for %s per slice, "+
			"unmeasured", b.opts.conns, b.opts.duration, b.opts.rounds, b.warmup()),
		"ok/s: answers with the wanted status per second; p50 and p99 over all answers",
		"CPU µs/req: the server process's user+system time per answered request "+
			"(warm-up included); the database's CPU is not in it. For in-process "+
			"yardsticks it is this process's CPU per operation",
		"CPUs: average CPUs kept busy over the case by the server, by the PostgreSQL "+
			"backends connected to the benchmark's databases, by the load generator, and "+
			"by anything else on the machine (other programs, PostgreSQL's own "+
			"background work)",
		"sessions writes: change of pg_stat_user_tables n_tup_upd (HOT in brackets), "+
			"n_tup_ins and n_tup_del of sessions over the case")
	b.rep.verdicts = append(b.rep.verdicts, verdict{
		target: "idle RSS < 30 MiB (PostgreSQL)", measured: mib(rss), met: rss < 30<<20,
		note: "VmRSS 2 s after start-up",
	})
	return nil
}
