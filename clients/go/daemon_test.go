package chanq

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests run against real chanqd processes on free loopback ports.
// CHANQD names the binary (tests/clients/go-client.sh sets it to the
// build's); without it, ../../build/daemon/chanqd is tried.

// testTimeout bounds every single wait of the tests.
const testTimeout = 20 * time.Second

type daemon struct {
	cmd     *exec.Cmd
	addr    string // plain listener
	tlsAddr string // TLS listener, when asked for
	dir     string
	log     *syncBuffer
	waited  chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func chanqdPath() (string, error) {
	if p := os.Getenv("CHANQD"); p != "" {
		return p, nil
	}
	p, _ := filepath.Abs("../../build/daemon/chanqd")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("set CHANQD to the path of chanqd (no %s): %w", p, err)
	}
	return p, nil
}

var (
	plainRx = regexp.MustCompile(`listening on 127\.0\.0\.1:(\d+)`)
	tlsRx   = regexp.MustCompile(`listening on tls:127\.0\.0\.1:(\d+)`)
)

// startDaemon starts chanqd --memory on a free loopback port with extra
// arguments; withTLS waits for a --tls-listen port too.
func startDaemon(withTLS bool, args ...string) (*daemon, error) {
	bin, err := chanqdPath()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "chanq-go-")
	if err != nil {
		return nil, err
	}
	d := &daemon{dir: dir, log: &syncBuffer{}, waited: make(chan struct{})}
	full := append([]string{"--memory", "--listen", "127.0.0.1:0"}, args...)
	d.cmd = exec.Command(bin, full...)
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { d.cmd.Wait(); close(d.waited) }()
	deadline := time.Now().Add(testTimeout)
	for time.Now().Before(deadline) {
		l := d.log.String()
		if m := plainRx.FindStringSubmatch(l); m != nil {
			d.addr = "127.0.0.1:" + m[1]
		}
		if m := tlsRx.FindStringSubmatch(l); m != nil {
			d.tlsAddr = "127.0.0.1:" + m[1]
		}
		if d.addr != "" && (!withTLS || d.tlsAddr != "") {
			return d, nil
		}
		select {
		case <-d.waited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("chanqd exited at start: %s", d.log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	d.stop()
	return nil, fmt.Errorf("chanqd did not start in %v: %s", testTimeout, d.log.String())
}

// stop sends SIGTERM and waits (SIGKILL after testTimeout).
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.waited:
	case <-time.After(testTimeout):
		d.cmd.Process.Kill()
		<-d.waited
	}
	os.RemoveAll(d.dir)
}

// newDaemon is startDaemon for one test, stopped at its end.
func newDaemon(t *testing.T, withTLS bool, args ...string) *daemon {
	t.Helper()
	d, err := startDaemon(withTLS, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	return d
}

// shared is the chanqd most tests use; each test uses its own queues.
var shared *daemon

func TestMain(m *testing.M) {
	var err error
	shared, err = startDaemon(false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chanq tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	shared.stop()
	os.Exit(code)
}

// tctx is a context bounded by testTimeout, cancelled at the test's end.
func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// dial connects to d (shared when nil), closed at the test's end.
func dial(t *testing.T, d *daemon, opts *Options) *Conn {
	t.Helper()
	if d == nil {
		d = shared
	}
	c, err := Dial(tctx(t), d.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var (
	runs    sync.Map // *testing.T -> its run number
	lastRun int64
	runMu   sync.Mutex
)

// qname is a queue name of this test's own, and of this run of it (for
// -count).
func qname(t *testing.T, suffix string) string {
	runMu.Lock()
	n, ok := runs.Load(t)
	if !ok {
		lastRun++
		n = lastRun
		runs.Store(t, n)
	}
	runMu.Unlock()
	name := regexp.MustCompile(`[^A-Za-z0-9_.:-]`).ReplaceAllString(t.Name(), "_")
	return fmt.Sprintf("%s.%d.%s", name, n, suffix)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
