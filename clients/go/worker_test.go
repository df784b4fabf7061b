package chanq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// submitN submits n jobs to q, pipelined from 50 goroutines on one
// connection; it returns their ids.
func submitN(t *testing.T, c *Conn, q string, n int) map[string]bool {
	t.Helper()
	ctx := tctx(t)
	var mu sync.Mutex
	ids := make(map[string]bool, n)
	var wg sync.WaitGroup
	var failed atomic.Value
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < n; i += 50 {
				id, err := c.Submit(ctx, q, i, nil)
				if err != nil {
					failed.Store(err)
					return
				}
				mu.Lock()
				ids[id] = true
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		t.Fatal(err)
	}
	return ids
}

// TestWorkerShutdownLosesNothing: a worker of 8 processes 10,000 jobs; it
// is stopped by its context midway, finishes its running jobs, and a
// second worker (ended by closing the queue) does the rest: every job ran
// exactly once and was acked. Consuming and polling, with Prefetch 1 and
// 16 (jobs received and not started at the stop are released).
func TestWorkerShutdownLosesNothing(t *testing.T) {
	for _, poll := range []bool{false, true} {
		for _, prefetch := range []int{1, 16} {
			name := fmt.Sprintf("poll=%v/prefetch%d", poll, prefetch)
			t.Run(name, func(t *testing.T) { testWorkerShutdown(t, poll, prefetch) })
		}
	}
}

func testWorkerShutdown(t *testing.T, poll bool, prefetch int) {
	const total = 10000
	c := dial(t, nil, nil)
	ctx := tctx(t)
	q := qname(t, "q")
	_, err := c.Declare(ctx, q, &QueueOptions{Capacity: total})
	must(t, err)
	ids := submitN(t, c, q, total)
	if len(ids) != total {
		t.Fatalf("%d ids for %d submits", len(ids), total)
	}

	var mu sync.Mutex
	runs := map[string]int{}
	attempts := map[string]int{}
	var ran int64
	handler := func(ctx context.Context, j *Job) (any, error) {
		mu.Lock()
		runs[j.ID]++
		attempts[j.ID] = j.Attempt
		mu.Unlock()
		if atomic.AddInt64(&ran, 1)%100 == 0 {
			time.Sleep(time.Millisecond) // some jobs are still running at the stop
		}
		return map[string]string{"by": "go"}, nil
	}
	var reported []error
	onError := func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	w := &Worker{Addr: shared.addr, Queues: []string{q}, Concurrency: 8, Poll: poll, Prefetch: prefetch, Handler: handler, OnError: onError}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.Run(wctx) }()
	waitFor(t, func() bool { return atomic.LoadInt64(&ran) >= total/3 })
	stop()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(testTimeout):
		t.Fatal("the worker did not stop")
	}
	first := atomic.LoadInt64(&ran)
	waitFor(t, func() bool { // the closed connections' reservations are back
		st, err := c.QueueStats(ctx, q)
		must(t, err)
		return st.Reserved == 0
	})
	st, err := c.QueueStats(ctx, q)
	must(t, err)
	if st.Acked != first || st.Depth != total-first {
		t.Fatalf("after the stop: %d ran, stats %+v", first, st)
	}

	must(t, c.CloseQueue(ctx, q)) // the second worker ends once drained
	w2 := &Worker{Addr: shared.addr, Queues: []string{q}, Concurrency: 8, Poll: poll, Prefetch: prefetch, Handler: handler, OnError: onError}
	go func() { done <- w2.Run(context.Background()) }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(3 * testTimeout):
		t.Fatal("the second worker did not end with the queue drained")
	}
	t.Logf("%d jobs in %v (%d before the stop)", total, time.Since(start), first)
	if len(runs) != total {
		t.Fatalf("%d distinct jobs ran", len(runs))
	}
	for id, n := range runs {
		if n != 1 || !ids[id] {
			t.Fatalf("job %s ran %d times (submitted: %v)", id, n, ids[id])
		}
	}
	st, err = c.QueueStats(ctx, q)
	must(t, err)
	if st.Acked != total || st.Depth != 0 || st.Reserved != 0 || st.Nacked != 0 {
		t.Fatalf("final stats %+v", st)
	}
	// Polling, a job whose fetch answer was on its way when the stop
	// closed the connection comes back with that delivery counted (it
	// never ran); consuming, the jobs not started are released.
	second := 0
	mu.Lock()
	for id, a := range attempts {
		if a > 2 {
			t.Fatalf("job %s ran as attempt %d", id, a)
		}
		if a == 2 {
			second++
		}
	}
	mu.Unlock()
	if second > 8 || (!poll && second > 0) {
		t.Fatalf("%d jobs ran as attempt 2", second)
	}
	t.Logf("%d jobs ran as attempt 2", second)
	if len(reported) != 0 {
		t.Fatalf("errors reported: %v", reported)
	}
}

// runWorker runs a worker of n on q until the test ends.
func runWorker(t *testing.T, q string, n int, h Handler, onError func(error)) {
	runThis(t, &Worker{Addr: shared.addr, Queues: []string{q}, Concurrency: n, Handler: h, OnError: onError})
}

func runThis(t *testing.T, w *Worker) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Error("worker did not stop")
		}
	})
}

func TestWorkerJobCancelledWhileRunning(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	started := make(chan string, 1)
	ended := make(chan error, 1)
	reported := make(chan error, 10)
	runWorker(t, q, 2, func(ctx context.Context, j *Job) (any, error) {
		started <- j.ID
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
			return nil, ctx.Err()
		case <-time.After(testTimeout):
			ended <- errors.New("the job's context was not cancelled")
			return nil, nil
		}
	}, func(err error) { reported <- err })
	id, err := c.Submit(ctx, q, "long", nil)
	must(t, err)
	if got := <-started; got != id {
		t.Fatalf("started %s", got)
	}
	n, err := c.Cancel(ctx, id)
	must(t, err)
	if n != 1 {
		t.Fatalf("cancelled %d", n)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler ended with %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("handler did not end")
	}
	select {
	case err := <-reported:
		if !strings.Contains(err.Error(), "cancelled by the server") {
			t.Fatalf("reported %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("nothing reported")
	}
	info, err := c.JobInfo(ctx, id)
	must(t, err)
	if info.State != "cancelled" || info.Error != nil {
		t.Fatalf("job %+v", info)
	}
}

// scaled stretches the times of the tests that race a TTR against the
// worker's touches: 2x by default (a busy 2-core machine delays goroutines
// by a few hundred ms), times CHANQ_TEST_TIME_SCALE (set for sanitizer
// builds of chanqd, which run several times slower).
func scaled(d time.Duration) time.Duration {
	f := 2.0
	if s, err := strconv.ParseFloat(os.Getenv("CHANQ_TEST_TIME_SCALE"), 64); err == nil && s > 0 {
		f *= s
	}
	return time.Duration(float64(d) * f)
}

func TestWorkerTouchAckNack(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	var attempts sync.Map
	runWorker(t, q, 4, func(ctx context.Context, j *Job) (any, error) {
		var p string
		must(t, j.Decode(&p))
		attempts.Store(j.ID, j.Attempt)
		switch p {
		case "slow": // outlives its TTR three times over: touched
			select {
			case <-time.After(scaled(1200 * time.Millisecond)):
				return "slept", nil
			case <-ctx.Done():
				return nil, fmt.Errorf("cancelled: %w", ctx.Err())
			}
		case "fail":
			return nil, errors.New("boom")
		case "bury":
			return nil, &NackError{Err: errors.New("hopeless"), Dead: true}
		case "panic":
			panic("oops")
		}
		return nil, nil
	}, nil)
	slow, err := c.Submit(ctx, q, "slow", &SubmitOptions{TTR: scaled(400 * time.Millisecond)})
	must(t, err)
	fail, err := c.Submit(ctx, q, "fail", &SubmitOptions{MaxAttempts: 2})
	must(t, err)
	bury, err := c.Submit(ctx, q, "bury", &SubmitOptions{MaxAttempts: 5})
	must(t, err)
	pan, err := c.Submit(ctx, q, "panic", &SubmitOptions{MaxAttempts: 1})
	must(t, err)
	plain, err := c.Submit(ctx, q, "plain", nil)
	must(t, err)
	for _, tc := range []struct{ id, state, result, errText string }{
		{slow, "done", `"slept"`, ""},
		{plain, "done", "", ""},
		{bury, "dead", "", "hopeless"},
		{pan, "dead", "", "panic: oops"},
	} {
		o, err := c.Wait(ctx, tc.id, testTimeout)
		must(t, err)
		if o.State != tc.state || string(o.Result) != tc.result || o.Error != tc.errText {
			t.Fatalf("job %s: %+v (result %s), want %+v", tc.id, o, o.Result, tc)
		}
	}
	if a, _ := attempts.Load(slow); a != 1 {
		t.Fatalf("the slow job ran as attempt %v", a)
	}
	// "fail" is nacked with the backoff (1 s): attempt 2 fails too, and
	// then it is dead.
	info, err := c.JobInfo(ctx, fail)
	must(t, err)
	if info.Error == nil || *info.Error != "boom" {
		t.Fatalf("failed job %+v", info)
	}
}

// TestWorkerJobDeadline: a job's context ends at its deadline.
func TestWorkerJobDeadline(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	ended := make(chan error, 1)
	runWorker(t, q, 1, func(ctx context.Context, j *Job) (any, error) {
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	}, nil)
	// Revoked (deadline) by the server, or the job's own context deadline,
	// whichever comes first.
	id, err := c.Submit(ctx, q, 1, &SubmitOptions{Deadline: 300 * time.Millisecond})
	must(t, err)
	select {
	case <-ended:
	case <-time.After(testTimeout):
		t.Fatal("the job's context outlived its deadline")
	}
	o, err := c.Wait(ctx, id, testTimeout)
	must(t, err)
	if o.State != "expired" {
		t.Fatalf("job after its deadline: %+v", o)
	}
}

// TestWorkerTTRRunningOut: without a touch in time (here the touch
// interval is longer than the TTR), the job's context ends shortly before
// the TTR runs out.
func TestWorkerTTRRunningOut(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	ended := make(chan time.Duration, 1)
	runThis(t, &Worker{Addr: shared.addr, Queues: []string{q}, TouchInterval: time.Hour,
		Handler: func(ctx context.Context, j *Job) (any, error) {
			start := time.Now()
			<-ctx.Done()
			ended <- time.Since(start)
			return nil, ctx.Err()
		}})
	_, err := c.Submit(ctx, q, 1, &SubmitOptions{TTR: 500 * time.Millisecond})
	must(t, err)
	select {
	case d := <-ended:
		if d < 350*time.Millisecond || d >= 500*time.Millisecond {
			t.Fatalf("the job's context ended after %v (TTR 500ms)", d)
		}
	case <-time.After(testTimeout):
		t.Fatal("the job's context outlived its TTR")
	}
}

// TestWorkerPrefetchTouchesWaitingJobs: with Prefetch, jobs waiting their
// turn longer than half their TTR are touched before they start; a
// waiting job cancelled by the server is skipped.
func TestWorkerPrefetchTouchesWaitingJobs(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	var mu sync.Mutex
	ran := map[string]int{}
	started := make(chan struct{}, 10)
	var ids []string
	for i := 0; i < 4; i++ {
		id, err := c.Submit(ctx, q, i, &SubmitOptions{TTR: scaled(600 * time.Millisecond)})
		must(t, err)
		ids = append(ids, id)
	}
	runThis(t, &Worker{Addr: shared.addr, Queues: []string{q}, Prefetch: 4,
		Handler: func(ctx context.Context, j *Job) (any, error) {
			started <- struct{}{}
			mu.Lock()
			ran[j.ID] = j.Attempt
			mu.Unlock()
			time.Sleep(scaled(250 * time.Millisecond))
			return nil, ctx.Err()
		}})
	<-started
	_, err := c.Cancel(ctx, ids[3]) // held, not started yet
	must(t, err)
	for _, id := range ids[:3] {
		o, err := c.Wait(ctx, id, testTimeout)
		must(t, err)
		if o.State != "done" {
			t.Fatalf("job %s: %+v", id, o)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != 3 || ran[ids[3]] != 0 {
		t.Fatalf("ran %v", ran)
	}
	for id, a := range ran {
		if a != 1 {
			t.Fatalf("job %s ran as attempt %d", id, a)
		}
	}
}

// TestWorkerConsumesOnOneConnection: the default Worker holds one
// connection however many slots it has, and acks every job.
func TestWorkerConsumesOnOneConnection(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	_, err := c.Declare(ctx, q, &QueueOptions{Capacity: 3000})
	must(t, err)
	submitN(t, c, q, 3000)
	before := connections(t, c)
	var ran int64
	runThis(t, &Worker{Addr: shared.addr, Queues: []string{q}, Concurrency: 8,
		Handler: func(ctx context.Context, j *Job) (any, error) {
			atomic.AddInt64(&ran, 1)
			return nil, nil
		}})
	waitFor(t, func() bool {
		st, err := c.QueueStats(ctx, q)
		must(t, err)
		return st.Acked == 3000
	})
	if n := connections(t, c); n != before+1 {
		t.Fatalf("%d connections for a worker of 8 (before: %d)", n, before)
	}
	if atomic.LoadInt64(&ran) != 3000 {
		t.Fatalf("%d runs", ran)
	}
}

func connections(t *testing.T, c *Conn) int64 {
	st, err := c.Stats(tctx(t))
	must(t, err)
	n, _ := st["connections"].(float64)
	return int64(n)
}
