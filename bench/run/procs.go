package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux this runs on).
const clockTicks = 100

// build compiles a command of this module as the project ships it: static
// (CGO_ENABLED=0), trimmed paths, and, when strip is set, without symbol
// tables.
func build(ctx context.Context, pkg, out string, strip bool) error {
	args := []string{"build", "-trimpath", "-o", out}
	if strip {
		args = append(args, "-ldflags=-s -w")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// proc is a server the benchmark started.
type proc struct {
	name string
	cmd  *exec.Cmd
	addr string
	log  *os.File
	done chan error
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start runs bin with args and env (added to a minimal environment), its
// output going to logPath, and waits until GET readyPath on addr answers
// readyStatus. It returns the process and how long that took from the
// fork.
func start(name, bin, addr, readyPath string, readyStatus int, logPath string,
	env []string, args ...string) (*proc, time.Duration, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: create log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")},
		env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// A process group of its own keeps a Ctrl-C at the terminal from
	// reaching the server before the benchmark has stopped it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, 0, fmt.Errorf("%s: start: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, addr: addr, log: logFile, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()

	// Polled every millisecond: the start-up time is read from this loop,
	// so its resolution is the poll's.
	url := "http://" + addr + readyPath
	client := &http.Client{Timeout: time.Second}
	deadline := t0.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			logFile.Close()
			return nil, 0, fmt.Errorf("%s exited while starting (%v); see %s", name, err,
				logPath)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == readyStatus {
				return p, time.Since(t0), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	p.stop()
	return nil, 0, fmt.Errorf("%s did not become ready within a minute; see %s", name, logPath)
}

// stop sends SIGTERM and waits for the process, killing it after ten
// seconds.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// memory reads the resident set size and its high-water mark, in bytes,
// from /proc/PID/status.
func memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("read memory of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse %s of %d: %w", name, pid, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS or VmHWM for %d", pid)
	}
	return rss, hwm, sc.Err()
}

// resetPeak resets the process's VmHWM to its current RSS, so that the
// next reading is the peak of what follows.
func resetPeak(pid int) error {
	path := filepath.Join("/proc", strconv.Itoa(pid), "clear_refs")
	if err := os.WriteFile(path, []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of %d: %w", pid, err)
	}
	return nil
}

// cpuTime reads the user plus system CPU time the process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	return parseCPUTime(string(b))
}

// parseCPUTime takes utime and stime out of a /proc/PID/stat line. The
// command name, field 2, may contain spaces, so fields are counted from
// the closing parenthesis.
func parseCPUTime(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat line")
	}
	f := strings.Fields(stat[i+1:])
	// After the name: state is field 3, utime 14 and stime 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse CPU ticks: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
