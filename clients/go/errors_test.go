package chanq

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var allSentinels = []error{ErrBadRequest, ErrFrameTooLarge, ErrUnknownOp, ErrUnauthorized,
	ErrNotFound, ErrNotReserved, ErrQueueFull, ErrTimeout, ErrClosed, ErrCancelled,
	ErrConflict, ErrTooLarge, ErrLimit, ErrShuttingDown, ErrInternal}

// checkCode asserts err is the server's error code, as the sentinel and
// as an *Error with a message, and no other sentinel.
func checkCode(t *testing.T, what string, err error, sentinel error) {
	t.Helper()
	code := strings.TrimPrefix(sentinel.Error(), "chanq: ")
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != code || e.Message == "" || e.Op == "" {
		t.Fatalf("%s: not an *Error with code %s and a message: %#v", what, code, err)
	}
	for _, s := range allSentinels {
		if s != sentinel && errors.Is(err, s) {
			t.Fatalf("%s: %v is also %v", what, err, s)
		}
	}
	if !strings.Contains(err.Error(), code) || !strings.Contains(err.Error(), e.Message) {
		t.Fatalf("%s: text %q", what, err.Error())
	}
}

// TestErrorCodes provokes every error code of the protocol on a real
// chanqd (internal, which only a failing disk produces, on a fake server)
// and checks each arrives as its sentinel.
func TestErrorCodes(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	must(t, os.WriteFile(tokens, []byte("s3cret\n"), 0o600))
	limited := newDaemon(t, false, "--max-frame", "2048", "--max-job", "1024", "--max-queues", "3")
	guarded := newDaemon(t, false, "--token-file", tokens)
	ctx := tctx(t)
	c := dial(t, limited, nil)
	q := "q"

	_, err := c.Submit(ctx, "bad name", 1, nil)
	checkCode(t, "submit to a bad queue name", err, ErrBadRequest)
	_, err = c.Submit(ctx, q, strings.Repeat("x", 3000), nil)
	checkCode(t, "a line over --max-frame", err, ErrFrameTooLarge)
	_, err = c.Request(ctx, "frobnicate", nil)
	checkCode(t, "an unknown op", err, ErrUnknownOp)
	g := dial(t, guarded, nil)
	checkCode(t, "ping without the token", g.Ping(ctx), ErrUnauthorized)
	_, err = c.JobInfo(ctx, "123456789")
	checkCode(t, "an unknown job", err, ErrNotFound)
	checkCode(t, "pause an unknown queue", c.Pause(ctx, "nope"), ErrNotFound)
	_, err = c.Declare(ctx, q, &QueueOptions{Capacity: 1})
	must(t, err)
	id, err := c.Submit(ctx, q, 1, nil)
	must(t, err)
	checkCode(t, "ack a job not fetched", c.Ack(ctx, id, nil), ErrNotReserved)
	_, err = c.Submit(ctx, q, 2, &SubmitOptions{Wait: NoWait})
	checkCode(t, "submit to a full queue", err, ErrQueueFull)
	_, err = c.Wait(ctx, id, NoWait)
	checkCode(t, "wait on a queued job", err, ErrTimeout)
	_, err = c.Declare(ctx, q, &QueueOptions{Capacity: 2})
	checkCode(t, "declare with another capacity", err, ErrConflict)
	_, err = c.Submit(ctx, "other", strings.Repeat("x", 1500), nil)
	checkCode(t, "a payload over --max-job", err, ErrTooLarge)
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: NoWait})
	must(t, err)
	_, err = c.Cancel(ctx, jobs[0].ID)
	must(t, err)
	checkCode(t, "ack a cancelled job", c.Ack(ctx, jobs[0].ID, nil), ErrCancelled)
	must(t, c.CloseQueue(ctx, q))
	_, err = c.Submit(ctx, q, 3, nil)
	checkCode(t, "submit to a closed queue", err, ErrClosed)
	_, err = c.Declare(ctx, "b", nil)
	must(t, err)
	_, err = c.Declare(ctx, "c", nil)
	must(t, err)
	_, err = c.Declare(ctx, "d", nil)
	checkCode(t, "a queue over --max-queues", err, ErrLimit)
	must(t, c.Ping(ctx)) // protocol errors leave the connection usable

	// shutting_down: a fetch waiting when the server stops.
	got := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctx, []string{"b"}, nil)
		got <- err
	}()
	waitFor(t, func() bool {
		o := dial(t, limited, nil)
		st, err := o.QueueStats(ctx, "b")
		return err == nil && st.WaitingFetchers == 1
	})
	limited.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-got:
		checkCode(t, "a fetch waiting as the server stops", err, ErrShuttingDown)
	case <-time.After(testTimeout):
		t.Fatal("the waiting fetch was not ended by the stop")
	}

	// internal: a fake server, since only a failing journal gives it.
	addr := fakeServer(t, func(req map[string]json.RawMessage) string {
		return fmt.Sprintf(`{"ok":false,"rid":%s,"error":{"code":"internal","message":"journal write failed: Input/output error"}}`, req["rid"])
	})
	f, err := Dial(ctx, addr, nil)
	must(t, err)
	defer f.Close()
	_, err = f.Submit(ctx, q, 1, nil)
	checkCode(t, "a journal failure", err, ErrInternal)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeServer answers each request line with answer(request).
func fakeServer(t *testing.T, answer func(map[string]json.RawMessage) string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				r := bufio.NewScanner(nc)
				for r.Scan() {
					var req map[string]json.RawMessage
					if json.Unmarshal(r.Bytes(), &req) != nil {
						return
					}
					if _, err := nc.Write([]byte(answer(req) + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestProtocolViolation: an answer for another request breaks the
// connection rather than being given to the wrong caller; an event between
// answers is passed to OnEvent.
func TestProtocolViolation(t *testing.T) {
	ctx := tctx(t)
	addr := fakeServer(t, func(req map[string]json.RawMessage) string {
		if string(req["op"]) == `"ping"` {
			return `{"event":"cancel","id":"7"}` + "\n" + fmt.Sprintf(`{"ok":true,"rid":%s}`, req["rid"])
		}
		return `{"ok":true,"rid":999999}`
	})
	events := make(chan Event, 1)
	c, err := Dial(ctx, addr, &Options{OnEvent: func(e Event) { events <- e }})
	must(t, err)
	defer c.Close()
	must(t, c.Ping(ctx))
	if e := <-events; e.Type != "cancel" || e.ID != "7" {
		t.Fatalf("event %+v", e)
	}
	if err := c.Release(ctx, "1"); !errors.Is(err, ErrConnClosed) || !strings.Contains(err.Error(), "rid") {
		t.Fatalf("answer with another rid: %v", err)
	}
	if _, err := Dial(context.Background(), "127.0.0.1:1", nil); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

func TestTokenAuth(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	must(t, os.WriteFile(tokens, []byte("s3cret\nother\n"), 0o600))
	d := newDaemon(t, false, "--token-file", tokens)
	ctx := tctx(t)
	if _, err := Dial(ctx, d.addr, &Options{Token: "wrong"}); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("dial with a wrong token: %v", err)
	}
	c := dial(t, d, &Options{Token: "s3cret", ClientName: "go-test"})
	if c.Server().Server != "chanqd" {
		t.Fatalf("hello answer %+v", c.Server())
	}
	id, err := c.Submit(ctx, "q", 1, nil)
	must(t, err)
	anon := dial(t, d, nil)
	_, err = anon.JobInfo(ctx, id)
	checkCode(t, "job without the token", err, ErrUnauthorized)
	_, err = anon.Hello(ctx, "late", "other")
	must(t, err)
	_, err = anon.JobInfo(ctx, id)
	must(t, err)
}
