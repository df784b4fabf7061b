package chanq

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// The Worker's default mode: one connection that consumes. The server
// pushes jobs (events, on the connection's reading goroutine) into an
// inbox; the slots take them from there and hand their outcome to one
// sender, which writes whatever has gathered meanwhile (the acks without a
// result as one request) and reads the answers, so no slot waits for one.

// consumer is a Worker's state in consume mode.
type consumer struct {
	w        *Worker
	prefetch int

	mu        sync.Mutex
	conn      *Conn                // the current connection
	gen       int                  // which connection conn is (1, 2, ... as redialled)
	inbox     []pushed             // received, not started, oldest first
	waiting   map[string]string    // inbox job ids -> why the server took it back ("": held)
	running   map[string]*runState // jobs the slots run
	inputDone bool                 // no job will come any more

	wake  chan struct{} // cap 1: the inbox grew, or the input ended
	ended chan struct{} // closed once every queue is closed and drained
	once  sync.Once
	out   chan outcome // slots -> sender
}

// pushed is a job from the inbox and the connection it came on.
type pushed struct {
	gen int
	job *Job
	at  time.Time // when it arrived: its reservation started about then
}

type runState struct {
	cancel context.CancelFunc
	gone   string // why the server took it back while it ran
}

// outcome is what a slot hands the sender: the request that ends a job.
type outcome struct {
	conn *Conn
	req  *request
}

// ackBatch is the most ids one ack request carries (the protocol's limit).
const ackBatch = 1000

func (w *Worker) runConsume(ctx context.Context, n int) error {
	c := &consumer{
		w:        w,
		prefetch: w.Prefetch,
		waiting:  map[string]string{},
		running:  map[string]*runState{},
		wake:     make(chan struct{}, 1),
		ended:    make(chan struct{}),
		out:      make(chan outcome, 4*n),
	}
	if c.prefetch <= 0 {
		c.prefetch = n
	}
	if _, err := c.dial(ctx); err != nil {
		return err
	}
	var slots sync.WaitGroup
	for i := 0; i < n; i++ {
		slots.Add(1)
		go func() {
			defer slots.Done()
			c.slot(ctx)
		}()
	}
	sent := make(chan struct{})
	go func() {
		c.sendLoop()
		close(sent)
	}()
	c.feed(ctx)
	slots.Wait()
	close(c.out)
	<-sent
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	conn.Close()
	return nil
}

// dial connects and consumes, making the connection the current one.
func (c *consumer) dial(ctx context.Context) (*Conn, error) {
	var o Options
	if c.w.Options != nil {
		o = *c.w.Options
	}
	c.mu.Lock()
	gen := c.gen + 1
	c.mu.Unlock()
	user := o.OnEvent
	o.OnEvent = func(ev Event) {
		c.event(gen, ev)
		if user != nil {
			user(ev)
		}
	}
	conn, err := dialAddr(ctx, c.w.Addr, &o)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.conn, c.gen = conn, gen
	c.mu.Unlock()
	if err := conn.Consume(ctx, c.w.Queues, &ConsumeOptions{Prefetch: c.prefetch}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func (c *consumer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// event runs on the reading goroutine of connection gen.
func (c *consumer) event(gen int, ev Event) {
	switch ev.Type {
	case "jobs":
		now := time.Now()
		c.mu.Lock()
		for _, j := range ev.Jobs {
			c.inbox = append(c.inbox, pushed{gen: gen, job: j, at: now})
			c.waiting[j.ID] = ""
		}
		c.mu.Unlock()
		c.signal()
	case "consume_end":
		// "shutting_down": the connection closes soon, and feed redials.
		if ev.Reason == "closed" {
			c.once.Do(func() { close(c.ended) })
		}
	case "cancel", "revoked":
		why := "cancelled"
		if ev.Type == "revoked" {
			why = "revoked (" + ev.Reason + ")"
		}
		c.mu.Lock()
		if _, ok := c.waiting[ev.ID]; ok {
			c.waiting[ev.ID] = why
		} else if r := c.running[ev.ID]; r != nil {
			if r.gone == "" {
				r.gone = why
			}
			r.cancel()
		}
		c.mu.Unlock()
	}
}

// endInput: no job will come any more; the slots end once the inbox is
// empty.
func (c *consumer) endInput() {
	c.mu.Lock()
	c.inputDone = true
	c.mu.Unlock()
	c.signal()
}

// feed keeps the consume going until ctx is done (then it stops it: no
// job is pushed after cancel_consume's answer) or every queue is closed
// and drained; a lost connection is redialled.
func (c *consumer) feed(ctx context.Context) {
	defer c.endInput()
	delay := 100 * time.Millisecond
	for {
		c.mu.Lock()
		conn := c.conn
		c.mu.Unlock()
		select {
		case <-c.ended:
			return
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := conn.CancelConsume(cctx); err != nil && conn.Err() == nil {
				c.w.report(fmt.Errorf("chanq worker: cancel_consume: %w", err))
			}
			cancel()
			return
		case <-conn.done:
		}
		if ctx.Err() != nil {
			return
		}
		c.w.report(fmt.Errorf("chanq worker: connection lost: %w", conn.Err()))
		for {
			if !sleep(ctx, delay) {
				return
			}
			if _, err := c.dial(ctx); err == nil {
				delay = 100 * time.Millisecond
				break
			} else if ctx.Err() != nil {
				return
			} else {
				c.w.report(fmt.Errorf("chanq worker: %w", err))
			}
			if delay *= 2; delay > 5*time.Second {
				delay = 5 * time.Second
			}
		}
	}
}

// next takes the oldest job of the inbox, waiting for one; false once the
// input ended and the inbox is empty.
func (c *consumer) next() (pushed, bool) {
	for {
		c.mu.Lock()
		if len(c.inbox) > 0 {
			p := c.inbox[0]
			c.inbox[0] = pushed{}
			c.inbox = c.inbox[1:]
			more := len(c.inbox) > 0
			c.mu.Unlock()
			if more {
				c.signal() // another slot may take the next
			}
			return p, true
		}
		done := c.inputDone
		c.mu.Unlock()
		if done {
			c.signal() // the other slots end too
			return pushed{}, false
		}
		<-c.wake
	}
}

// slot runs jobs from the inbox until the input ended and the inbox is
// empty; after ctx is done it gives the jobs it takes back uncounted.
func (c *consumer) slot(ctx context.Context) {
	var k keeper // the running job's touches
	for {
		p, ok := c.next()
		if !ok {
			return
		}
		c.mu.Lock()
		why := c.waiting[p.job.ID]
		delete(c.waiting, p.job.ID)
		conn, current := c.conn, p.gen == c.gen
		c.mu.Unlock()
		switch {
		case why != "":
			c.w.report(fmt.Errorf("chanq worker: job %s %s by the server before it ran", p.job.ID, why))
		case !current || conn.Err() != nil:
			// its connection is gone, and with it the reservation
		case ctx.Err() != nil:
			c.out <- outcome{conn, &request{Op: "release", ID: p.job.ID}}
		default:
			c.run(conn, p, &k)
		}
	}
}

// run runs one job, kept by k, and hands its ack or nack to the sender
// (nothing when the server took the job back meanwhile).
func (c *consumer) run(conn *Conn, p pushed, k *keeper) {
	job, reservedAt := p.job, p.at
	if time.Since(reservedAt) > job.TTR/2 {
		// It waited for a slot: renew the reservation before starting.
		reservedAt = time.Now()
		tctx, cancel := context.WithTimeout(context.Background(), job.TTR)
		err := conn.Touch(tctx, job.ID, 0)
		cancel()
		if err != nil {
			c.w.report(fmt.Errorf("chanq worker: job %s taken back before it ran: %w", job.ID, err))
			return
		}
	}
	jctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !job.Deadline.IsZero() {
		var c2 context.CancelFunc
		jctx, c2 = context.WithDeadline(jctx, job.Deadline)
		defer c2()
	}
	st := &runState{cancel: cancel}
	c.mu.Lock()
	c.running[job.ID] = st
	c.mu.Unlock()
	gone := func(why string) {
		c.mu.Lock()
		if st.gone == "" {
			st.gone = why
		}
		c.mu.Unlock()
	}
	k.start(conn, c.w.TouchInterval, gone, job, reservedAt, cancel)
	result, err := callHandler(c.w.Handler, jctx, job)
	k.stop()
	c.mu.Lock()
	delete(c.running, job.ID)
	why := st.gone
	c.mu.Unlock()
	if why != "" {
		c.w.report(fmt.Errorf("chanq worker: job %s %s by the server while it ran; not acked", job.ID, why))
		return
	}
	c.out <- outcome{conn, outcomeRequest(job.ID, result, err)}
}

// sendLoop sends the slots' outcomes until the slots are done: whatever
// has gathered goes out together, then its answers are read.
func (c *consumer) sendLoop() {
	for first := range c.out {
		batch := []outcome{first}
	gather:
		for len(batch) < 4*ackBatch {
			select {
			case o, ok := <-c.out:
				if !ok {
					break gather
				}
				batch = append(batch, o)
			default:
				break gather
			}
		}
		byConn := map[*Conn][]*request{}
		var order []*Conn
		for _, o := range batch {
			if _, seen := byConn[o.conn]; !seen {
				order = append(order, o.conn)
			}
			byConn[o.conn] = append(byConn[o.conn], o.req)
		}
		for _, conn := range order {
			c.send(conn, batchAcks(byConn[conn]))
		}
	}
}

// batchAcks puts the acks without a result of reqs into as few requests
// as the protocol allows (the others stay as they are).
func batchAcks(reqs []*request) []*request {
	var ids []string
	var out []*request
	for _, r := range reqs {
		if r.Op == "ack" && r.Result == nil {
			ids = append(ids, r.ID)
		} else {
			out = append(out, r)
		}
	}
	for len(ids) > 0 {
		k := len(ids)
		if k > ackBatch {
			k = ackBatch
		}
		if k == 1 {
			out = append(out, &request{Op: "ack", ID: ids[0]})
		} else {
			out = append(out, &request{Op: "ack", IDs: ids[:k:k]})
		}
		ids = ids[k:]
	}
	return out
}

// sentReq is a request whose answer is to be read.
type sentReq struct {
	req  *request
	call *call
}

// send writes reqs pipelined on conn and reads their answers, reporting
// failures. At most maxPending wait for their answer at once (the
// connection's in-flight places are not all taken: touches share them).
func (c *consumer) send(conn *Conn, reqs []*request) {
	const maxPending = 64
	var pending []sentReq
	settle := func(s sentReq) {
		line, err := conn.await(context.Background(), s.call)
		if err == nil {
			err = c.decode(s.req, line)
		}
		if err != nil {
			c.w.report(fmt.Errorf("chanq worker: %s: %w", s.req.Op, err))
		}
	}
	for _, r := range reqs {
		if len(pending) == maxPending {
			settle(pending[0])
			pending = pending[1:]
		}
		p, err := conn.send(context.Background(), r)
		if err != nil {
			c.w.report(fmt.Errorf("chanq worker: %s: %w", r.Op, err))
			continue
		}
		pending = append(pending, sentReq{r, p})
	}
	for _, s := range pending {
		settle(s)
	}
}

// decode checks an answer; an ack of several ids reports the ids that
// failed.
func (c *consumer) decode(req *request, line []byte) error {
	if len(req.IDs) == 0 {
		return decodeAnswer(req.Op, line, nil)
	}
	var a struct {
		Errors []wireFailed `json:"errors"`
	}
	if err := decodeAnswer(req.Op, line, &a); err != nil {
		return err
	}
	for _, f := range a.Errors {
		c.w.report(fmt.Errorf("chanq worker: ack %s: %w", f.ID, &Error{Op: "ack", Code: f.Code, Message: f.Message}))
	}
	return nil
}
