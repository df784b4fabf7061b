package chanq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPingHelloRequest(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	must(t, c.Ping(ctx))
	info, err := c.Hello(ctx, "go-test", "")
	must(t, err)
	if info.Server != "chanqd" || info.Protocol != 1 || info.Version == "" {
		t.Fatalf("hello: %+v", info)
	}
	c2 := dial(t, nil, &Options{ClientName: "go-test"})
	if c2.Server().Protocol != 1 {
		t.Fatalf("Dial's hello: %+v", c2.Server())
	}
	a, err := c.Request(ctx, "submit", map[string]any{"queue": qname(t, "raw"), "payload": []int{1, 2}})
	must(t, err)
	var id string
	must(t, json.Unmarshal(a["id"], &id))
	if id == "" {
		t.Fatalf("raw submit answer %v", a)
	}
}

func TestSubmitFetchAckWaitJob(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	type mail struct {
		To string `json:"to"`
	}
	id, err := c.Submit(ctx, q, mail{To: "a<b>@example.com"}, &SubmitOptions{TTR: 5 * time.Second, MaxAttempts: 4})
	must(t, err)
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	if len(jobs) != 1 {
		t.Fatalf("fetched %d jobs", len(jobs))
	}
	j := jobs[0]
	var m mail
	must(t, j.Decode(&m))
	if j.ID != id || j.Queue != q || j.Attempt != 1 || j.TTR != 5*time.Second || m.To != "a<b>@example.com" || !j.Deadline.IsZero() {
		t.Fatalf("job %+v payload %s", j, j.Payload)
	}
	info, err := c.JobInfo(ctx, id)
	must(t, err)
	if info.State != "reserved" || info.MaxAttempts != 4 || info.TTRMs != 5000 || info.Parent != nil {
		t.Fatalf("job info %+v", info)
	}
	must(t, c.Ack(ctx, id, map[string]bool{"sent": true}))
	o, err := c.Wait(ctx, id, 5*time.Second)
	must(t, err)
	if o.State != "done" || string(o.Result) != `{"sent":true}` {
		t.Fatalf("wait: %+v %s", o, o.Result)
	}
	info, err = c.JobInfo(ctx, id)
	must(t, err)
	if info.State != "done" || string(info.Result) != `{"sent":true}` || string(info.Payload) != "null" {
		t.Fatalf("job info after ack %+v", info)
	}
	// A raw JSON payload goes verbatim (compacted); no result gives none.
	id, err = c.Submit(ctx, q, json.RawMessage(`{ "n" : [1, 2.5e3] }`), nil)
	must(t, err)
	jobs, err = c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	if string(jobs[0].Payload) != `{"n":[1,2.5e3]}` {
		t.Fatalf("raw payload came back as %s", jobs[0].Payload)
	}
	must(t, c.Ack(ctx, id, nil))
	o, err = c.Wait(ctx, id, NoWait)
	must(t, err)
	if o.State != "done" || o.Result != nil {
		t.Fatalf("wait without result: %+v", o)
	}
	if _, err := c.Submit(ctx, q, func() {}, nil); err == nil || c.Err() != nil {
		t.Fatalf("a payload that is not JSON: %v (conn %v)", err, c.Err())
	}
}

func TestSubmitOptions(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	// Delay: not deliverable at once.
	start := time.Now()
	id, err := c.Submit(ctx, q, 1, &SubmitOptions{Delay: 300 * time.Millisecond})
	must(t, err)
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: NoWait})
	must(t, err)
	if len(jobs) != 0 {
		t.Fatalf("a delayed job was delivered at once")
	}
	if info, err := c.JobInfo(ctx, id); err != nil || info.State != "delayed" {
		t.Fatalf("delayed job: %+v %v", info, err)
	}
	jobs, err = c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	if len(jobs) != 1 || jobs[0].ID != id || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("delayed job: %d jobs after %v", len(jobs), time.Since(start))
	}
	must(t, c.Ack(ctx, id, nil))

	// Deadline: the fetched job carries it.
	id, err = c.Submit(ctx, q, 2, &SubmitOptions{Deadline: time.Minute})
	must(t, err)
	jobs, err = c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	if d := time.Until(jobs[0].Deadline); d < 50*time.Second || d > 61*time.Second {
		t.Fatalf("deadline in %v", d)
	}
	must(t, c.Ack(ctx, id, nil))

	// Traceparent: kept with the job, delivered with it, in JobInfo;
	// a malformed one is refused.
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	id, err = c.Submit(ctx, q, 3, &SubmitOptions{Traceparent: tp})
	must(t, err)
	if _, err := c.Submit(ctx, q, 4, &SubmitOptions{Traceparent: strings.ToUpper(tp)}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("an uppercase traceparent: %v", err)
	}
	if info, err := c.JobInfo(ctx, id); err != nil || info.Traceparent == nil || *info.Traceparent != tp {
		t.Fatalf("JobInfo's traceparent: %+v %v", info, err)
	}
	jobs, err = c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	if len(jobs) != 1 || jobs[0].ID != id || jobs[0].Traceparent != tp {
		t.Fatalf("fetched: %+v", jobs)
	}
	must(t, c.Ack(ctx, id, nil))

	// Parent: cancelling the parent cancels the child.
	parent, err := c.Submit(ctx, q, "parent", &SubmitOptions{Delay: time.Hour})
	must(t, err)
	child, err := c.Submit(ctx, q, "child", &SubmitOptions{Parent: parent, Delay: time.Hour})
	must(t, err)
	info, err := c.JobInfo(ctx, child)
	must(t, err)
	if info.Parent == nil || *info.Parent != parent {
		t.Fatalf("child's parent %v", info.Parent)
	}
	n, err := c.Cancel(ctx, parent)
	must(t, err)
	if n != 2 {
		t.Fatalf("cancel parent cancelled %d", n)
	}
	if o, err := c.Wait(ctx, child, NoWait); err != nil || o.State != "cancelled" {
		t.Fatalf("child after cancel: %+v %v", o, err)
	}

	// Send-side select: a full queue is passed over.
	qa, qb := qname(t, "a"), qname(t, "b")
	_, err = c.Declare(ctx, qa, &QueueOptions{Capacity: 1})
	must(t, err)
	_, err = c.Declare(ctx, qb, &QueueOptions{Capacity: 1})
	must(t, err)
	_, first, err := c.SubmitAny(ctx, []string{qa, qb}, 1, &SubmitOptions{Wait: NoWait})
	must(t, err)
	_, second, err := c.SubmitAny(ctx, []string{qa, qb}, 2, &SubmitOptions{Wait: NoWait})
	must(t, err)
	if first == second || (first != qa && first != qb) || (second != qa && second != qb) {
		t.Fatalf("select went to %q then %q", first, second)
	}
	if _, _, err := c.SubmitAny(ctx, []string{qa, qb}, 3, &SubmitOptions{Wait: NoWait}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("both full: %v", err)
	}
}

func TestSubmitKey(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	first, err := c.SubmitResult(ctx, []string{q}, 1, &SubmitOptions{Key: "order-17"})
	must(t, err)
	if first.Duplicate || first.Queue != q {
		t.Fatalf("first keyed submit: %+v", first)
	}
	again, err := c.SubmitResult(ctx, []string{q}, 2, &SubmitOptions{Key: "order-17"})
	must(t, err)
	if again != (Submitted{ID: first.ID, Duplicate: true}) {
		t.Fatalf("the key again: %+v, first %+v", again, first)
	}
	if id, err := c.Submit(ctx, q, 3, &SubmitOptions{Key: "order-17"}); err != nil || id != first.ID {
		t.Fatalf("Submit with the key: %s %v, want %s", id, err, first.ID)
	}
	other, err := c.Submit(ctx, q, 4, &SubmitOptions{Key: "order-18"})
	must(t, err)
	if other == first.ID {
		t.Fatalf("another key named the same job")
	}
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Count: 10, Timeout: NoWait})
	must(t, err)
	if len(jobs) != 2 || jobs[0].ID != first.ID || string(jobs[0].Payload) != "1" || jobs[1].ID != other {
		t.Fatalf("fetched %+v", jobs)
	}
	if _, err := c.Submit(ctx, q, 5, &SubmitOptions{Key: strings.Repeat("k", 129)}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a 129-byte key: %v", err)
	}
	// A select, and a Cluster (of one server), say it the same way.
	sel, err := c.SubmitResult(ctx, []string{q, q + "-b"}, 6, &SubmitOptions{Key: "order-17"})
	must(t, err)
	if sel != (Submitted{ID: first.ID, Duplicate: true}) {
		t.Fatalf("a select with the key: %+v", sel)
	}
	cl, err := NewCluster(ctx, []string{shared.addr}, nil)
	must(t, err)
	defer cl.Close()
	if s, err := cl.SubmitResult(ctx, []string{q}, 7, &SubmitOptions{Key: "order-18"}); err != nil ||
		s != (Submitted{ID: other, Duplicate: true}) {
		t.Fatalf("Cluster.SubmitResult: %+v %v", s, err)
	}
	if _, err := c.SubmitResult(ctx, []string{""}, 8, nil); !errors.Is(err, errNoQueue) {
		t.Fatalf("an empty queue name: %v", err)
	}
}

func TestSubmitPriority(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	var ids []string
	for i, level := range []int{0, 5, 0, 9, 5} {
		id, err := c.Submit(ctx, q, i, &SubmitOptions{Priority: level})
		must(t, err)
		ids = append(ids, id)
	}
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Count: 5, Timeout: 5 * time.Second})
	must(t, err)
	var got []string
	for _, j := range jobs {
		got = append(got, j.ID)
	}
	want := []string{ids[3], ids[1], ids[4], ids[0], ids[2]} // 9, 5, 5, 0, 0
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for _, bad := range []int{10, -1} {
		if _, err := c.Submit(ctx, q, 0, &SubmitOptions{Priority: bad}); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("priority %d: %v", bad, err)
		}
	}
}

func TestSubmitRunAt(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	at := time.Now().Add(time.Second).Truncate(time.Millisecond)
	id, err := c.Submit(ctx, q, "later", &SubmitOptions{RunAt: at})
	must(t, err)
	// One clock on one machine: whenever a fetch gives the job, its time
	// has come (on a slow host the first fetch may already get it).
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: NoWait})
	must(t, err)
	if len(jobs) == 0 {
		jobs, err = c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 10 * time.Second})
		must(t, err)
	}
	if now := time.Now(); now.Before(at) {
		t.Fatalf("fetched at %v, due at %v", now, at)
	}
	if len(jobs) != 1 || jobs[0].ID != id {
		t.Fatalf("fetched %+v", jobs)
	}
	past, err := c.Submit(ctx, q, "past", &SubmitOptions{RunAt: time.Now().Add(-time.Hour)})
	must(t, err)
	if jobs, err = c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second}); err != nil || len(jobs) != 1 || jobs[0].ID != past {
		t.Fatalf("a past run_at: %+v %v", jobs, err)
	}
	for what, o := range map[string]*SubmitOptions{
		"with Delay":     {RunAt: at, Delay: time.Second},
		"400 days ahead": {RunAt: time.Now().Add(400 * 24 * time.Hour)},
	} {
		if _, err := c.Submit(ctx, q, 0, o); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("RunAt %s: %v", what, err)
		}
	}
}

func TestFetchOptions(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	qa, qb := qname(t, "a"), qname(t, "b")
	for i := 0; i < 5; i++ {
		_, err := c.Submit(ctx, qa, i, nil)
		must(t, err)
	}
	jobs, err := c.Fetch(ctx, []string{qa}, &FetchOptions{Count: 3, Timeout: 5 * time.Second})
	must(t, err)
	if len(jobs) != 3 {
		t.Fatalf("count 3 gave %d jobs", len(jobs))
	}
	for i, j := range jobs { // in queue order
		if string(j.Payload) != fmt.Sprint(i) {
			t.Fatalf("job %d has payload %s", i, j.Payload)
		}
		must(t, c.Ack(ctx, j.ID, nil))
	}
	_, err = c.Submit(ctx, qb, "b", nil)
	must(t, err)
	for i := 0; i < 3; i++ { // strict: the first listed ready queue wins
		jobs, err = c.Fetch(ctx, []string{qb, qa}, &FetchOptions{Strict: true, Timeout: NoWait})
		must(t, err)
		want := qa
		if i == 0 {
			want = qb
		}
		if len(jobs) != 1 || jobs[0].Queue != want {
			t.Fatalf("strict fetch %d: %+v", i, jobs)
		}
		must(t, c.Release(ctx, jobs[0].ID))
		if want == qb {
			jobs, _ = c.Fetch(ctx, []string{qb}, &FetchOptions{Timeout: NoWait})
			must(t, c.Ack(ctx, jobs[0].ID, nil))
		}
	}
	// Timeout: an empty answer, no error.
	start := time.Now()
	jobs, err = c.Fetch(ctx, []string{qname(t, "empty")}, &FetchOptions{Timeout: 150 * time.Millisecond})
	must(t, err)
	if len(jobs) != 0 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("timed out fetch: %d jobs after %v", len(jobs), time.Since(start))
	}
}

func TestNackReleaseTouchKick(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	id, err := c.Submit(ctx, q, "x", &SubmitOptions{MaxAttempts: 3, TTR: time.Second})
	must(t, err)
	fetch := func(wantAttempt int) {
		t.Helper()
		jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
		must(t, err)
		if len(jobs) != 1 || jobs[0].ID != id || jobs[0].Attempt != wantAttempt {
			t.Fatalf("fetch: %+v, want attempt %d", jobs, wantAttempt)
		}
	}
	fetch(1)
	state, err := c.Nack(ctx, id, &NackOptions{Error: "smtp timeout", Delay: NoWait})
	must(t, err)
	if state != "queued" {
		t.Fatalf("nack without delay: state %q", state)
	}
	fetch(2)
	must(t, c.Release(ctx, id)) // the delivery is not counted
	fetch(2)
	// Touch: the reservation outlives its 1 s TTR.
	for i := 0; i < 3; i++ {
		time.Sleep(400 * time.Millisecond)
		must(t, c.Touch(ctx, id, 0))
	}
	must(t, c.Touch(ctx, id, 2*time.Second))
	info, err := c.JobInfo(ctx, id)
	must(t, err)
	if info.State != "reserved" || info.Attempt != 2 || info.Error == nil || *info.Error != "smtp timeout" {
		t.Fatalf("after touches: %+v", info)
	}
	state, err = c.Nack(ctx, id, &NackOptions{Error: "bad address", Dead: true})
	must(t, err)
	if state != "dead" {
		t.Fatalf("nack dead: state %q", state)
	}
	o, err := c.Wait(ctx, id, NoWait)
	must(t, err)
	if o.State != "dead" || o.Error != "bad address" {
		t.Fatalf("wait on the dead job: %+v", o)
	}
	n, err := c.Kick(ctx, q, 0)
	must(t, err)
	if n != 1 {
		t.Fatalf("kicked %d", n)
	}
	fetch(1) // fresh attempts
	state, err = c.Nack(ctx, id, &NackOptions{Delay: time.Hour})
	must(t, err)
	if state != "delayed" {
		t.Fatalf("nack with a delay: state %q", state)
	}
}

func TestQueueOps(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, nil)
	q := qname(t, "q")
	s, err := c.Declare(ctx, q, &QueueOptions{Capacity: 100, TTR: time.Minute, MaxAttempts: 5})
	must(t, err)
	if s.Name != q || s.Capacity != 100 || s.TTRMs != 60000 || s.MaxAttempts != 5 || s.Depth != 0 {
		t.Fatalf("declare: %+v", s)
	}
	_, err = c.Declare(ctx, q, &QueueOptions{Capacity: 100, TTR: time.Minute, MaxAttempts: 5})
	must(t, err)
	if _, err := c.Declare(ctx, q, &QueueOptions{Capacity: 5}); !errors.Is(err, ErrConflict) {
		t.Fatalf("declare with other settings: %v", err)
	}
	u, err := c.Declare(ctx, qname(t, "unbuffered"), &QueueOptions{Unbuffered: true})
	must(t, err)
	if u.Capacity != 0 {
		t.Fatalf("unbuffered queue has capacity %d", u.Capacity)
	}
	_, err = c.Submit(ctx, q, 1, nil)
	must(t, err)
	must(t, c.Pause(ctx, q))
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: NoWait})
	must(t, err)
	st, err := c.QueueStats(ctx, q)
	must(t, err)
	if len(jobs) != 0 || !st.Paused || st.Depth != 1 || st.Submitted != 1 {
		t.Fatalf("paused queue: %d jobs, stats %+v", len(jobs), st)
	}
	must(t, c.Resume(ctx, q))
	must(t, c.CloseQueue(ctx, q))
	if _, err := c.Submit(ctx, q, 2, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit to a closed queue: %v", err)
	}
	jobs, err = c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: time.Second})
	must(t, err)
	if len(jobs) != 1 {
		t.Fatalf("a closed queue is drained: %d jobs", len(jobs))
	}
	must(t, c.Ack(ctx, jobs[0].ID, nil))
	if _, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: time.Second}); !errors.Is(err, ErrClosed) {
		t.Fatalf("fetch from a closed, drained queue: %v", err)
	}
	st, err = c.QueueStats(ctx, q)
	must(t, err)
	if !st.Closed || st.Acked != 1 || st.Delivered != 1 {
		t.Fatalf("closed queue stats %+v", st)
	}
	srv, err := c.Stats(ctx)
	must(t, err)
	if _, ok := srv["uptime_s"]; !ok {
		t.Fatalf("server stats %v", srv)
	}
}

func TestQueuesPages(t *testing.T) {
	d := newDaemon(t, false)
	ctx := tctx(t)
	c := dial(t, d, nil)
	// 1234 queues: more than a default page of 1000, declared pipelined.
	var want []string
	var wg sync.WaitGroup
	errs := make(chan error, 1234)
	for i := 0; i < 1234; i++ {
		name := fmt.Sprintf("q%04d", i)
		want = append(want, name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Declare(ctx, name, nil); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all, err := c.Queues(ctx)
	must(t, err)
	var got []string
	for _, q := range all {
		got = append(got, q.Name)
	}
	if !sort.StringsAreSorted(got) || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Queues listed %d queues: %v...", len(got), got[:5])
	}
	page, next, err := c.QueuesPage(ctx, "q0009", 2)
	must(t, err)
	if len(page) != 2 || page[0].Name != "q0010" || page[1].Name != "q0011" || next != "q0011" {
		t.Fatalf("page after q0009: %+v next %q", page, next)
	}
	page, next, err = c.QueuesPage(ctx, "q1232", 5)
	must(t, err)
	if len(page) != 1 || page[0].Name != "q1233" || next != "" {
		t.Fatalf("last page: %+v next %q", page, next)
	}
}

// TestPipelining sends 10,000 submits on one connection from 100
// goroutines at once.
func TestPipelining(t *testing.T) {
	ctx := tctx(t)
	c := dial(t, nil, &Options{MaxInFlight: 512})
	q := qname(t, "q")
	_, err := c.Declare(ctx, q, &QueueOptions{Capacity: 20000})
	must(t, err)
	const goroutines, each = 100, 100
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	start := time.Now()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id, err := c.Submit(ctx, q, map[string]int{"g": g, "i": i}, nil)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				ids[g] = append(ids[g], id)
			}
		}(g)
	}
	wg.Wait()
	must(t, firstErr)
	t.Logf("10000 pipelined submits in %v", time.Since(start))
	seen := map[string]bool{}
	for _, l := range ids {
		for _, id := range l {
			if seen[id] {
				t.Fatalf("id %s twice", id)
			}
			seen[id] = true
		}
	}
	st, err := c.QueueStats(ctx, q)
	must(t, err)
	if len(seen) != goroutines*each || st.Depth != goroutines*each {
		t.Fatalf("%d ids, depth %d", len(seen), st.Depth)
	}
	// Each goroutine's jobs are in its own order in the queue.
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Count: 1000, Timeout: NoWait})
	must(t, err)
	last := map[int]int{}
	for _, j := range jobs {
		var p struct{ G, I int }
		must(t, j.Decode(&p))
		if prev, ok := last[p.G]; ok && p.I <= prev {
			t.Fatalf("goroutine %d: job %d after %d", p.G, p.I, prev)
		}
		last[p.G] = p.I
	}
}

func TestBackpressure(t *testing.T) {
	ctx := tctx(t)
	producer := dial(t, nil, nil)
	consumer := dial(t, nil, nil)
	q := qname(t, "q")
	_, err := producer.Declare(ctx, q, &QueueOptions{Capacity: 1})
	must(t, err)
	_, err = producer.Submit(ctx, q, 1, nil)
	must(t, err)
	if _, err := producer.Submit(ctx, q, 2, &SubmitOptions{Wait: NoWait}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("submit to a full queue without waiting: %v", err)
	}
	if _, err := producer.Submit(ctx, q, 2, &SubmitOptions{Wait: 100 * time.Millisecond}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("submit whose wait ran out: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := producer.Submit(ctx, q, 2, &SubmitOptions{Wait: 10 * time.Second})
		done <- err
	}()
	deadline := time.Now().Add(testTimeout)
	for {
		st, err := consumer.QueueStats(ctx, q)
		must(t, err)
		if st.WaitingSubmitters == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the submit never waited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the submit returned (%v) while the queue was full", err)
	case <-time.After(200 * time.Millisecond):
	}
	jobs, err := consumer.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	must(t, consumer.Ack(ctx, jobs[0].ID, nil))
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(testTimeout):
		t.Fatal("the waiting submit did not get the room")
	}
	st, err := consumer.QueueStats(ctx, q)
	must(t, err)
	if st.Depth != 1 || st.Submitted != 2 || st.RejectedFull != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestContextCancellation(t *testing.T) {
	c := dial(t, nil, nil)
	q := qname(t, "q")
	// Done before sending: nothing is sent, the connection stays.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Ping(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("ping with a cancelled context: %v", err)
	}
	must(t, c.Ping(tctx(t)))
	// Done while waiting: the request is abandoned and the connection closed.
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	start := time.Now()
	if _, err := c.Fetch(short, []string{q}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch past its context's deadline: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the abandoned fetch took %v", time.Since(start))
	}
	if err := c.Ping(tctx(t)); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("ping after an abandoned request: %v", err)
	}
	if !errors.Is(c.Err(), ErrConnClosed) {
		t.Fatalf("Err: %v", c.Err())
	}
	// The server dropped the abandoned fetch: a job submitted now stays queued.
	c2 := dial(t, nil, nil)
	ctx := tctx(t)
	_, err := c2.Submit(ctx, q, 1, nil)
	must(t, err)
	time.Sleep(50 * time.Millisecond)
	st, err := c2.QueueStats(ctx, q)
	must(t, err)
	if st.Depth != 1 || st.Reserved != 0 {
		t.Fatalf("stats after the abandoned fetch %+v", st)
	}
}

func TestEvents(t *testing.T) {
	ctx := tctx(t)
	events := make(chan Event, 10)
	c := dial(t, nil, &Options{OnEvent: func(e Event) { events <- e }})
	other := dial(t, nil, nil)
	q := qname(t, "q")
	next := func() Event {
		select {
		case e := <-events:
			return e
		case <-time.After(testTimeout):
			t.Fatal("no event")
		}
		return Event{}
	}
	id, err := other.Submit(ctx, q, 1, &SubmitOptions{TTR: 200 * time.Millisecond})
	must(t, err)
	_, err = c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	if e := next(); e.Type != "revoked" || e.ID != id || e.Reason != "ttr" {
		t.Fatalf("event %+v", e)
	}
	if err := c.Ack(ctx, id, nil); !errors.Is(err, ErrNotReserved) {
		t.Fatalf("ack after revoked: %v", err)
	}
	jobs, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	if jobs[0].ID != id || jobs[0].Attempt != 2 {
		t.Fatalf("second delivery %+v", jobs[0])
	}
	_, err = other.Cancel(ctx, id)
	must(t, err)
	if e := next(); e.Type != "cancel" || e.ID != id {
		t.Fatalf("event %+v", e)
	}
	if err := c.Ack(ctx, id, nil); !errors.Is(err, ErrCancelled) {
		t.Fatalf("ack after cancel: %v", err)
	}
	must(t, c.Ping(ctx))
}

// TestConsume: jobs pushed up to the prefetch, acked several at a time,
// pushes stopped by CancelConsume; a fetch carrying acks.
func TestConsume(t *testing.T) {
	ctx := tctx(t)
	events := make(chan Event, 100)
	c := dial(t, nil, &Options{OnEvent: func(e Event) { events <- e }})
	other := dial(t, nil, nil)
	q := qname(t, "q")
	for i := 0; i < 5; i++ {
		_, err := other.Submit(ctx, q, i, nil)
		must(t, err)
	}
	must(t, c.Consume(ctx, []string{q}, &ConsumeOptions{Prefetch: 3}))
	var jobs []*Job
	quiet := func(d time.Duration) bool {
		select {
		case e := <-events:
			jobs = append(jobs, e.Jobs...)
			return false
		case <-time.After(d):
			return true
		}
	}
	for len(jobs) < 3 {
		if quiet(testTimeout) {
			t.Fatal("no jobs pushed")
		}
	}
	if !quiet(300*time.Millisecond) || len(jobs) != 3 {
		t.Fatalf("%d jobs pushed with a prefetch of 3", len(jobs))
	}
	var p int
	must(t, jobs[2].Decode(&p))
	if p != 2 || jobs[0].Attempt != 1 || jobs[0].Queue != q {
		t.Fatalf("jobs %+v", jobs)
	}
	m, err := c.AckMany(ctx, []string{jobs[0].ID, jobs[1].ID, jobs[2].ID, "404"})
	must(t, err)
	if m.Done != 3 || len(m.Failed) != 1 || !errors.Is(m.Failed["404"], ErrNotFound) {
		t.Fatalf("ack many: %+v", m)
	}
	for len(jobs) < 5 {
		if quiet(testTimeout) {
			t.Fatal("nothing pushed after the acks")
		}
	}
	must(t, c.CancelConsume(ctx))
	_, err = other.Submit(ctx, q, 5, nil)
	must(t, err)
	if !quiet(300 * time.Millisecond) {
		t.Fatal("a job pushed after CancelConsume")
	}
	m, err = c.NackMany(ctx, []string{jobs[3].ID, jobs[4].ID}, &NackOptions{Delay: NoWait})
	must(t, err)
	if m.Done != 2 || m.Failed != nil {
		t.Fatalf("nack many: %+v", m)
	}
	got, err := c.Fetch(ctx, []string{q}, &FetchOptions{Timeout: testTimeout})
	must(t, err)
	next, acks, err := c.FetchAcking(ctx, []string{q}, &FetchOptions{Timeout: testTimeout, Ack: []string{got[0].ID, "404"}})
	must(t, err)
	if len(next) != 1 || acks.Done != 1 || !errors.Is(acks.Failed["404"], ErrNotFound) {
		t.Fatalf("fetch acking: %d jobs, %+v", len(next), acks)
	}
	st, err := other.QueueStats(ctx, q)
	must(t, err)
	if st.Acked != 4 || st.Nacked != 2 || st.Reserved != 1 {
		t.Fatalf("stats %+v", st)
	}
}
