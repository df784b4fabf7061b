package chanq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Handler runs one job. Returning a nil error acks the job with result
// (nil: no result; a result encoding/json cannot encode nacks the job);
// a non-nil error nacks it with the error's text (see NackError to choose
// the delay or bury the job). A panic nacks it with "panic: ...". ctx is done when the
// server cancels the job, revokes its reservation, its deadline passes or
// its TTR is about to run out without a successful touch: the handler
// should then stop soon, as its work is no longer wanted or will be
// delivered again.
type Handler func(ctx context.Context, job *Job) (result any, err error)

// NackError, returned by a Handler (possibly wrapped), sets how the
// Worker nacks the job: after Delay (0: the server's backoff, NoWait: at
// once), or burying it at once when Dead is true.
type NackError struct {
	Err   error
	Delay time.Duration
	Dead  bool
}

func (e *NackError) Error() string {
	if e.Err == nil {
		return "nack"
	}
	return e.Err.Error()
}
func (e *NackError) Unwrap() error { return e.Err }

// Worker runs a Handler on the jobs of some queues, Concurrency jobs at a
// time.
//
// By default it has one connection that consumes: the server pushes up to
// Prefetch jobs at a time as they come, the Concurrency slots run them,
// and the acks and nacks go back pipelined, the acks without a result
// several to a request, so a job costs no round trip of its own. With Poll
// set, each slot has its own connection instead (a reservation, and the
// events about it, belong to the connection that fetched the job): it
// fetches a job (up to Prefetch jobs), runs it, and sends its ack or nack
// together with the next fetch.
//
// While a job runs, the Worker touches it every TouchInterval (default
// half the job's TTR), so a long job keeps its reservation. The job's
// context is cancelled when the server sends a cancel or revoked event for
// it, when a touch is refused, when its deadline passes and when its TTR
// is about to run out (a tenth of it, at most 1 s, before) without a
// successful touch. A job the server cancelled or took back is neither
// acked nor nacked.
//
// Set the fields, then call Run; a Worker must not be changed while it
// runs.
type Worker struct {
	Addr        string   // chanqd's address, as for Dial; "a:1,b:2,c:3": a cluster's nodes (DialLeader, again after each failover)
	Options     *Options // as for Dial (OnEvent is called too); may be nil
	Queues      []string // the queues to fetch from
	Handler     Handler  // runs each job
	Concurrency int      // jobs at once; default 1
	// Poll makes the Worker fetch, a connection per slot, instead of
	// consuming on one connection.
	Poll bool
	// Prefetch, consuming, is how many jobs the connection may hold at
	// once (default Concurrency); polling, how many jobs a slot fetches
	// at once (default 1). The jobs beyond the running ones wait,
	// reserved, for a slot, so it suits many short jobs: it saves the
	// server work and round trips. A waiting job is touched before it
	// starts if half its TTR has passed, skipped if the server took it
	// back, and released (its delivery uncounted) if the Worker stops
	// before starting it.
	Prefetch int
	// TouchInterval is how often a running job is touched; 0 means half
	// of the job's TTR.
	TouchInterval time.Duration
	// OnError, when set, is told about failures the Worker survives: an
	// ack or nack that failed, a job taken back by the server, a lost
	// connection (redialled after a pause).
	OnError func(error)
}

// Run works until ctx is done, then shuts down gracefully: it stops
// taking jobs (consuming: cancel_consume), lets the running jobs finish
// and be acked or nacked, releases jobs it received and had not started,
// closes its connections and returns nil. Polling, a waiting fetch is
// abandoned by closing its connection (the protocol has no other way to
// end it): a job the server was about to hand over goes back to its queue
// uncounted, but one whose answer was already on its way goes back as
// from any lost connection, with that delivery counted as an attempt
// although it never ran. Run also returns nil once every queue is closed
// and drained. It returns an error if it cannot connect at start.
//
// signal.NotifyContext gives a ctx that ends on SIGTERM or SIGINT.
func (w *Worker) Run(ctx context.Context) error {
	if w.Handler == nil {
		return errors.New("chanq: Worker without a Handler")
	}
	if len(w.Queues) == 0 {
		return errNoQueue
	}
	n := w.Concurrency
	if n <= 0 {
		n = 1
	}
	if !w.Poll {
		return w.runConsume(ctx, n)
	}
	slots := make([]*slot, n)
	for i := range slots {
		s := &slot{w: w}
		c, err := s.dial(ctx)
		if err != nil {
			for _, o := range slots[:i] {
				o.conn.Close()
			}
			return err
		}
		s.conn = c
		slots[i] = s
	}
	var wg sync.WaitGroup
	for _, s := range slots {
		wg.Add(1)
		go func(s *slot) {
			defer wg.Done()
			s.loop(ctx)
		}(s)
	}
	wg.Wait()
	return nil
}

func (w *Worker) report(err error) {
	if w.OnError != nil {
		w.OnError(err)
	}
}

// slot is one connection of a Worker and the jobs it holds.
type slot struct {
	w    *Worker
	conn *Conn

	mu     sync.Mutex
	jobID  string             // the running job, "" between jobs
	cancel context.CancelFunc // cancels the running job's context
	gone   string             // why the server no longer holds the running job for us
	held   map[string]string  // fetched jobs not yet run -> why gone ("" if held)

	keeper keeper // keeps the running job's reservation
}

func (s *slot) dial(ctx context.Context) (*Conn, error) {
	var o Options
	if s.w.Options != nil {
		o = *s.w.Options
	}
	user := o.OnEvent
	o.OnEvent = func(ev Event) {
		s.event(ev)
		if user != nil {
			user(ev)
		}
	}
	return dialAddr(ctx, s.w.Addr, &o)
}

func (s *slot) event(ev Event) {
	var why string
	switch ev.Type {
	case "cancel":
		why = "cancelled"
	case "revoked":
		why = "revoked (" + ev.Reason + ")"
	default:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.ID == "" {
		return
	}
	if ev.ID == s.jobID {
		s.gone = why
		s.cancel()
		return
	}
	if _, ok := s.held[ev.ID]; ok {
		s.held[ev.ID] = why
	}
}

// loop fetches and runs jobs until ctx is done or the queues are closed.
//
// A job's ack (or nack) is sent and the next fetch right behind it,
// without waiting for the ack's answer in between: the two go out
// together and the server answers the ack first, which saves a round trip
// per job. The answers are read before the next fetch is abandoned.
func (s *slot) loop(ctx context.Context) {
	var replies []*pendingReply // acks and nacks not yet answered
	defer func() {
		for _, r := range replies {
			s.settle(r)
		}
		s.conn.Close()
	}()
	var fo *FetchOptions
	if s.w.Prefetch > 1 {
		fo = &FetchOptions{Count: s.w.Prefetch}
	}
	for ctx.Err() == nil {
		jobs, err := s.fetch(ctx, replies, fo)
		replies = replies[:0]
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return
			}
			s.w.report(fmt.Errorf("chanq worker: %w", err))
			// A lost connection is dialled again; a refusal is retried.
			if !sleep(ctx, time.Second) {
				return
			}
			if errors.Is(err, ErrConnClosed) || errors.Is(err, ErrNotLeader) || s.conn.Err() != nil {
				s.conn.Close()
				c, err := s.dial(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					s.w.report(fmt.Errorf("chanq worker: %w", err))
					continue
				}
				s.conn = c
			}
			continue
		}
		fetched := time.Now()
		if len(jobs) > 1 {
			s.mu.Lock()
			s.held = make(map[string]string, len(jobs))
			for _, j := range jobs[1:] {
				s.held[j.ID] = ""
			}
			s.mu.Unlock()
		}
		for i, j := range jobs {
			reservedAt := fetched
			if i > 0 {
				s.mu.Lock()
				why := s.held[j.ID]
				delete(s.held, j.ID)
				s.mu.Unlock()
				if why != "" {
					s.w.report(fmt.Errorf("chanq worker: job %s %s by the server before it ran", j.ID, why))
					continue
				}
				if ctx.Err() != nil { // stopping: give it back uncounted
					if p, err := s.conn.send(context.Background(), &request{Op: "release", ID: j.ID}); err == nil {
						replies = append(replies, &pendingReply{op: "release", id: j.ID, call: p})
					}
					continue
				}
				if time.Since(fetched) > j.TTR/2 {
					reservedAt = time.Now()
					tctx, cancel := context.WithTimeout(context.Background(), j.TTR)
					err := s.conn.Touch(tctx, j.ID, 0)
					cancel()
					if err != nil {
						s.w.report(fmt.Errorf("chanq worker: job %s taken back before it ran: %w", j.ID, err))
						continue
					}
				}
			}
			if r := s.run(j, reservedAt); r != nil {
				replies = append(replies, r)
			}
		}
		s.mu.Lock()
		s.held = nil
		s.mu.Unlock()
	}
}

// fetch fetches the next jobs, with the previous jobs' acks and nacks
// (replies) still in flight ahead of it. When ctx ends, the fetch is
// abandoned (closing the connection) only once replies are answered, so
// that closing cannot lose an ack the server has not read yet.
func (s *slot) fetch(ctx context.Context, replies []*pendingReply, fo *FetchOptions) ([]*Job, error) {
	if len(replies) == 0 {
		return s.conn.Fetch(ctx, s.w.Queues, fo)
	}
	settled := make(chan struct{})
	go func() {
		for _, r := range replies {
			s.settle(r)
		}
		close(settled)
	}()
	fctx, abandon := context.WithCancel(context.Background())
	defer abandon()
	fetched := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			<-settled
			abandon()
		case <-fetched:
		}
	}()
	jobs, err := s.conn.Fetch(fctx, s.w.Queues, fo)
	close(fetched)
	<-settled
	return jobs, err
}

// pendingReply is an ack or nack sent and not yet answered.
type pendingReply struct {
	op, id string
	call   *call
}

// settle reads the answer of an ack or nack and reports a failure.
func (s *slot) settle(r *pendingReply) {
	line, err := s.conn.await(context.Background(), r.call)
	if err == nil {
		err = decodeAnswer(r.op, line, nil)
	}
	if err != nil {
		s.w.report(fmt.Errorf("chanq worker: %s %s: %w", r.op, r.id, err))
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// run runs one job and sends its ack or nack, returning it unanswered
// (nil when nothing was sent).
func (s *slot) run(job *Job, reservedAt time.Time) *pendingReply {
	jctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !job.Deadline.IsZero() {
		var c2 context.CancelFunc
		jctx, c2 = context.WithDeadline(jctx, job.Deadline)
		defer c2()
	}
	s.mu.Lock()
	s.jobID, s.cancel, s.gone = job.ID, cancel, ""
	s.mu.Unlock()

	k := s.keep(job, reservedAt, cancel)
	result, err := callHandler(s.w.Handler, jctx, job)
	k.stop()

	s.mu.Lock()
	gone := s.gone
	s.jobID, s.cancel, s.gone = "", nil, ""
	s.mu.Unlock()
	if gone != "" {
		s.w.report(fmt.Errorf("chanq worker: job %s %s by the server while it ran; not acked", job.ID, gone))
		return nil
	}
	req := outcomeRequest(job.ID, result, err)
	p, serr := s.conn.send(context.Background(), req)
	if serr != nil {
		s.w.report(fmt.Errorf("chanq worker: %s %s: %w", req.Op, job.ID, serr))
		return nil
	}
	return &pendingReply{op: req.Op, id: job.ID, call: p}
}

// outcomeRequest is the ack (with result, when not nil) or, when err is
// not nil or result is not JSON, the nack that ends a job's run.
func outcomeRequest(id string, result any, err error) *request {
	req := &request{Op: "ack", ID: id}
	if err == nil && result != nil {
		res, merr := marshalJSON("result", result)
		if merr != nil {
			err = merr // a result that is not JSON fails the job
		} else {
			req.Result = res
		}
	}
	if err != nil {
		req = &request{Op: "nack", ID: id, Error: err.Error()}
		var ne *NackError
		if errors.As(err, &ne) {
			req.DelayMs, req.Dead = ms(ne.Delay), ne.Dead
		}
	}
	return req
}

// callHandler runs the handler, turning a panic into an error.
func callHandler(h Handler, ctx context.Context, job *Job) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			result, err = nil, fmt.Errorf("panic: %v", r)
		}
	}()
	return h(ctx, job)
}

// takenBack records why the server no longer holds the slot's running job
// (the first reason wins).
func (s *slot) takenBack(why string) {
	s.mu.Lock()
	if s.gone == "" {
		s.gone = why
	}
	s.mu.Unlock()
}

// keeper keeps a running job's reservation with two timers rather than a
// goroutine, armed again for each job (a short job costs two timer
// resets): tick touches the job every interval, expiry cancels its
// context when the reservation is about to run out without a successful
// touch. A callback acts only if the current job's time has come, so one
// that fired for an earlier job does nothing. A touch runs on tick's own
// goroutine. Each slot (polling or consuming) has one, for the job it runs.
type keeper struct {
	mu       sync.Mutex       // guards the fields below
	conn     *Conn            // the connection holding the job
	gone     func(why string) // told why, when a touch is refused
	job      *Job             // the running job, nil between jobs
	cancel   context.CancelFunc
	ttr      time.Duration
	interval time.Duration
	margin   time.Duration
	tickAt   time.Time // when the job is due for a touch
	expiryAt time.Time // when its reservation is about to end
	touching bool      // a touch is on its way
	tick     *time.Timer
	expiry   *time.Timer
}

// keep starts keeping job (reserved at reservedAt) until the keeper's stop.
func (s *slot) keep(job *Job, reservedAt time.Time, cancel context.CancelFunc) *keeper {
	return s.keeper.start(s.conn, s.w.TouchInterval, s.takenBack, job, reservedAt, cancel)
}

// start keeps job, held on conn and reserved at reservedAt, touching it
// every interval (0: half its TTR), until stop.
func (k *keeper) start(conn *Conn, interval time.Duration, gone func(string), job *Job,
	reservedAt time.Time, cancel context.CancelFunc) *keeper {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.conn, k.gone, k.job, k.cancel, k.ttr = conn, gone, job, cancel, job.TTR
	if k.ttr <= 0 {
		k.ttr = 30 * time.Second
	}
	k.interval = interval
	if k.interval <= 0 {
		k.interval = k.ttr / 2
	}
	k.margin = k.ttr / 10
	if k.margin > time.Second {
		k.margin = time.Second
	}
	k.tickAt = time.Now().Add(k.interval)
	k.expiryAt = reservedAt.Add(k.ttr - k.margin)
	if k.tick == nil {
		k.tick = time.AfterFunc(k.interval, k.touch)
		k.expiry = time.AfterFunc(time.Until(k.expiryAt), k.expire)
	} else {
		k.tick.Reset(k.interval)
		k.expiry.Reset(time.Until(k.expiryAt))
	}
	return k
}

// stop ends the keeping of the job; a touch already on its way is ignored.
func (k *keeper) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.job, k.cancel = nil, nil
	k.tick.Stop()
	k.expiry.Stop()
}

// expire: the reservation is about to end; the server will take it back.
func (k *keeper) expire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.job != nil && !time.Now().Before(k.expiryAt) {
		k.cancel()
	}
}

// touch extends the reservation, then arms the next touch and the new
// expiry; a refused touch cancels the job.
func (k *keeper) touch() {
	k.mu.Lock()
	job, ttr := k.job, k.ttr
	if job == nil || k.touching || time.Now().Before(k.tickAt) {
		k.mu.Unlock()
		return
	}
	k.touching = true
	k.mu.Unlock()
	sent := time.Now()
	tctx, tcancel := context.WithTimeout(context.Background(), ttr)
	err := k.conn.Touch(tctx, job.ID, 0)
	tcancel()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.touching = false
	if k.job != job {
		return // the job ended meanwhile
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			k.gone("taken back (touch: " + e.Code + ")")
		}
		k.expiry.Stop()
		k.cancel()
		return
	}
	k.expiryAt = sent.Add(k.ttr - k.margin)
	k.expiry.Reset(time.Until(k.expiryAt))
	k.tickAt = time.Now().Add(k.interval)
	k.tick.Reset(k.interval)
}
