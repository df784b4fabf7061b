package chanq

import (
	"bytes"
	"context"
	"encoding/json"
	"time"
)

// Hello identifies the client and presents a token (Dial does it for
// you from Options). It returns the server's name and versions.
func (c *Conn) Hello(ctx context.Context, client, token string) (ServerInfo, error) {
	var r struct{ ServerInfo }
	err := c.do(ctx, &request{Op: "hello", Client: client, Token: token}, &r)
	return r.ServerInfo, err
}

// Ping asks the server for an empty answer.
func (c *Conn) Ping(ctx context.Context) error {
	return c.do(ctx, &request{Op: "ping"}, nil)
}

// Request sends any request, {"op":op, ...fields}, and returns the
// answer's members (an answer with "ok":false is an *Error). It is the
// way to use fields or ops this package does not know. fields must not
// contain "op" or "rid".
func (c *Conn) Request(ctx context.Context, op string, fields map[string]any) (map[string]json.RawMessage, error) {
	if fields == nil {
		fields = map[string]any{}
	}
	var out map[string]json.RawMessage
	err := c.do(ctx, &request{Op: op, Extra: fields}, &out)
	if out != nil {
		delete(out, "ok")
		delete(out, "rid")
	}
	return out, err
}

// SubmitOptions are the optional fields of a submit. Zero values leave
// the field out (the server's or queue's default applies).
type SubmitOptions struct {
	Delay       time.Duration // not deliverable before this (default: at once)
	TTR         time.Duration // how long a reservation lasts (default: the queue's, 30 s)
	MaxAttempts int           // deliveries before the job is dead (default: the queue's, 3)
	Deadline    time.Duration // the job expires this long after the submit (default: never)
	Parent      string        // a job id: cancelling the parent cancels this job
	// Traceparent is a W3C trace context ("00-TRACEID-PARENTID-FLAGS")
	// kept with the job and delivered with it (Job.Traceparent), so the
	// worker's span joins the producer's trace; a malformed one is
	// ErrBadRequest.
	Traceparent string
	// Wait is how long to wait for room in a full queue before
	// ErrQueueFull (or, for an unbuffered queue, for a consumer before
	// ErrTimeout); 0 means the server's --submit-wait (30 s), NoWait
	// fails at once.
	Wait time.Duration
	// Key is an idempotency key (1..128 bytes): while a job submitted
	// with it is live, and for the server's key-window after it
	// finished, a submit with it makes no job and answers that job's id
	// (Submitted.Duplicate, from SubmitResult). It makes a submit safe
	// to make again after a lost answer.
	Key string
	// Priority is the job's level, 0..9: a queue delivers its higher
	// levels first, FIFO within a level. 0 (the default) is not sent.
	Priority int
	// RunAt makes the job ready at that time (a past time: at once),
	// sent as ms since the epoch; at most 365 days ahead, and not with
	// Delay. The zero time is not sent.
	RunAt time.Time
}

// The server checks Key, Priority and RunAt as it checks the other
// fields: a value out of range (a priority not in 0..9, a RunAt more than
// 365 days ahead or with Delay, a key over 128 bytes) is ErrBadRequest
// with its message, and makes no job.

func (o *SubmitOptions) fill(r *request) {
	if o == nil {
		return
	}
	if o.Delay > 0 {
		r.DelayMs = ms(o.Delay)
	}
	r.TTRMs = ms(o.TTR)
	r.MaxAttempts = intp(o.MaxAttempts)
	r.DeadlineMs = ms(o.Deadline)
	r.Parent = o.Parent
	r.Traceparent = o.Traceparent
	r.WaitMs = ms(o.Wait)
	r.Key = o.Key
	r.Priority = intp(o.Priority)
	if !o.RunAt.IsZero() {
		at := o.RunAt.UnixMilli()
		r.RunAt = &at
	}
}

type submitAnswer struct {
	ID        string `json:"id"`
	Queue     string `json:"queue"`
	Duplicate bool   `json:"duplicate"`
}

// Submitted is the whole answer to a submit (SubmitResult).
type Submitted struct {
	ID        string // the new job's id, or, when Duplicate, the one that holds the key
	Queue     string // the queue that took the job; "" when Duplicate (not said)
	Duplicate bool   // SubmitOptions.Key was held by job ID: no job was made
}

// Submit adds a job to queue and returns its id. payload is encoded with
// encoding/json; pass a json.RawMessage to send JSON text as it is. opts
// may be nil. When the queue is full the submit waits for room (see
// SubmitOptions.Wait) and meanwhile holds back the connection's later
// requests.
func (c *Conn) Submit(ctx context.Context, queue string, payload any, opts *SubmitOptions) (string, error) {
	if queue == "" {
		return "", errNoQueue
	}
	p, err := marshalJSON("payload", payload)
	if err != nil {
		return "", err
	}
	r := request{Op: "submit", Queue: queue, Payload: p}
	opts.fill(&r)
	line, err := c.roundTrip(ctx, &r)
	if err != nil {
		return "", err
	}
	if id, ok := quickID(line); ok {
		return id, nil
	}
	var a submitAnswer
	err = decodeAnswer(r.Op, line, &a)
	return a.ID, err
}

// quickID reads the id of the usual submit answer,
// {"ok":true,"rid":N,"id":"DIGITS"}, without encoding/json; false for any
// other shape.
func quickID(line []byte) (string, bool) {
	const tail = `"}`
	i := bytes.LastIndex(line, []byte(`,"id":"`))
	if !bytes.HasPrefix(line, []byte(`{"ok":true,`)) || i < 0 || !bytes.HasSuffix(line, []byte(tail)) {
		return "", false
	}
	id := line[i+len(`,"id":"`) : len(line)-len(tail)]
	if len(id) == 0 {
		return "", false
	}
	for _, ch := range id {
		if ch < '0' || ch > '9' {
			return "", false
		}
	}
	return string(id), true
}

// SubmitAny is a send-side select: the job goes to one of queues that has
// room (waiting for room in any of them, see SubmitOptions.Wait). It
// returns the job's id and the queue that took it.
func (c *Conn) SubmitAny(ctx context.Context, queues []string, payload any, opts *SubmitOptions) (id, queue string, err error) {
	if len(queues) == 0 {
		return "", "", errNoQueue
	}
	p, err := marshalJSON("payload", payload)
	if err != nil {
		return "", "", err
	}
	r := request{Op: "submit", Queues: queues, Payload: p}
	opts.fill(&r)
	var a submitAnswer
	err = c.do(ctx, &r, &a)
	return a.ID, a.Queue, err
}

// SubmitResult is Submit (one queue) or SubmitAny (several) that also
// says whether the id is that of a job already holding opts.Key.
func (c *Conn) SubmitResult(ctx context.Context, queues []string, payload any, opts *SubmitOptions) (Submitted, error) {
	if len(queues) == 0 || (len(queues) == 1 && queues[0] == "") {
		return Submitted{}, errNoQueue
	}
	p, err := marshalJSON("payload", payload)
	if err != nil {
		return Submitted{}, err
	}
	r := request{Op: "submit", Payload: p}
	if len(queues) == 1 {
		r.Queue = queues[0]
	} else {
		r.Queues = queues
	}
	opts.fill(&r)
	var a submitAnswer
	if err := c.do(ctx, &r, &a); err != nil {
		return Submitted{}, err
	}
	if a.Queue == "" && !a.Duplicate { // a duplicate's job may be anywhere
		a.Queue = r.Queue
	}
	return Submitted(a), nil
}

// Job is a job delivered by Fetch (or pushed after Consume), reserved for
// the connection that got it until it is acked, nacked or released, its
// TTR runs out or the connection closes.
type Job struct {
	ID       string          // server-assigned id
	Queue    string          // the queue it came from
	Payload  json.RawMessage // the payload, verbatim
	Attempt  int             // 1 on the first delivery
	TTR      time.Duration   // how long the reservation lasts unless touched
	Deadline time.Time       // when the job expires; zero without a deadline
	// Traceparent is the W3C trace context the job was submitted with,
	// "" without one: the parent of a span for the work.
	Traceparent string
}

// Decode unmarshals the job's payload into v.
func (j *Job) Decode(v any) error { return json.Unmarshal(j.Payload, v) }

type wireJob struct {
	ID          string          `json:"id"`
	Queue       string          `json:"queue"`
	Payload     json.RawMessage `json:"payload"`
	Attempt     int             `json:"attempt"`
	TTRMs       int64           `json:"ttr_ms"`
	Deadline    *int64          `json:"deadline"`
	Traceparent string          `json:"traceparent"`
}

// FetchOptions are the optional fields of a fetch.
type FetchOptions struct {
	// Count is the most jobs to take (default 1); the answer comes as
	// soon as one is ready.
	Count int
	// Timeout is how long to wait for a job; after it Fetch returns no
	// jobs and no error. 0 waits until a job comes (or ctx is done,
	// which closes the connection); NoWait does not wait.
	Timeout time.Duration
	// Strict takes from the first listed queue that has a job rather
	// than from a random ready one.
	Strict bool
	// Ack lists jobs this connection holds to ack (without results)
	// before fetching, so that a polling worker needs one round trip per
	// job. The acks stand whatever the fetch finds; the ids that could not
	// be acked are in the *Many of FetchAcking (Fetch drops them).
	Ack []string
}

// Fetch reserves up to opts.Count jobs from queues for this connection.
// It returns ErrClosed when every listed queue is closed and drained.
// While it waits, the connection's later requests wait too.
func (c *Conn) Fetch(ctx context.Context, queues []string, opts *FetchOptions) ([]*Job, error) {
	jobs, _, err := c.FetchAcking(ctx, queues, opts)
	return jobs, err
}

// FetchAcking is Fetch that also says how the acks of opts.Ack went.
func (c *Conn) FetchAcking(ctx context.Context, queues []string, opts *FetchOptions) ([]*Job, *Many, error) {
	if len(queues) == 0 {
		return nil, nil, errNoQueue
	}
	r := request{Op: "fetch", Queues: queues}
	if opts != nil {
		r.Count = intp(opts.Count)
		r.TimeoutMs = ms(opts.Timeout)
		r.Strict = opts.Strict
		r.Ack = opts.Ack
	}
	line, err := c.roundTrip(ctx, &r)
	if err != nil {
		return nil, nil, err
	}
	if len(r.Ack) == 0 {
		if jobs, ok := quickJobs(line); ok {
			return jobs, &Many{}, nil
		}
	}
	var a struct {
		Jobs      []wireJob    `json:"jobs"`
		AckErrors []wireFailed `json:"ack_errors"`
	}
	if err := decodeAnswer(r.Op, line, &a); err != nil {
		return nil, nil, err
	}
	return jobsOf(a.Jobs), manyOf("ack", len(r.Ack)-len(a.AckErrors), a.AckErrors), nil
}

func jobsOf(wire []wireJob) []*Job {
	if wire == nil {
		return nil
	}
	jobs := make([]*Job, len(wire))
	for i, w := range wire {
		j := &Job{ID: w.ID, Queue: w.Queue, Payload: w.Payload, Attempt: w.Attempt,
			TTR: time.Duration(w.TTRMs) * time.Millisecond, Traceparent: w.Traceparent}
		if w.Deadline != nil {
			j.Deadline = time.UnixMilli(*w.Deadline)
		}
		jobs[i] = j
	}
	return jobs
}

// ConsumeOptions are the optional fields of a consume.
type ConsumeOptions struct {
	// Prefetch is how many unacked jobs the connection may hold: the
	// server pushes jobs while it holds fewer (default 1; at most 1000).
	Prefetch int
	// Strict takes from the first listed queue that has a job rather
	// than from a random ready one.
	Strict bool
}

// Consume subscribes this connection to queues: the server pushes jobs
// to it as they come, as "jobs" events to Options.OnEvent (Event.Jobs),
// each reserved as if fetched, while the connection holds fewer than
// opts.Prefetch jobs. Called again it changes the subscription; with no
// queues, only the prefetch. A "consume_end" event says the server ended
// it (every queue closed and drained, or the server stopping). Unlike a
// fetch it never waits: the connection's other requests go on.
func (c *Conn) Consume(ctx context.Context, queues []string, opts *ConsumeOptions) error {
	r := request{Op: "consume", Queues: queues}
	if opts != nil {
		r.Prefetch = intp(opts.Prefetch)
		r.Strict = opts.Strict
	}
	return c.do(ctx, &r, nil)
}

// CancelConsume stops the connection's consume: no job is pushed after
// it returns. Jobs already pushed stay reserved to the connection.
func (c *Conn) CancelConsume(ctx context.Context) error {
	return c.do(ctx, &request{Op: "cancel_consume"}, nil)
}

// Many is the answer to a request that names several jobs: how many were
// done, and the error of each of the others, by id (an *Error as for
// one id).
type Many struct {
	Done   int
	Failed map[string]error
}

type wireFailed struct {
	ID      string `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func manyOf(op string, done int, failed []wireFailed) *Many {
	m := &Many{Done: done}
	if len(failed) > 0 {
		m.Failed = make(map[string]error, len(failed))
		for _, f := range failed {
			m.Failed[f.ID] = &Error{Op: op, Code: f.Code, Message: f.Message}
		}
	}
	return m
}

// AckMany finishes several jobs this connection holds (1 to 1000, without
// results) in one request.
func (c *Conn) AckMany(ctx context.Context, ids []string) (*Many, error) {
	var a struct {
		Acked  int          `json:"acked"`
		Errors []wireFailed `json:"errors"`
	}
	if err := c.do(ctx, &request{Op: "ack", IDs: ids}, &a); err != nil {
		return nil, err
	}
	return manyOf("ack", a.Acked, a.Errors), nil
}

// NackMany fails several jobs this connection holds the same way in one
// request.
func (c *Conn) NackMany(ctx context.Context, ids []string, opts *NackOptions) (*Many, error) {
	r := request{Op: "nack", IDs: ids}
	if opts != nil {
		r.Error = opts.Error
		r.DelayMs = ms(opts.Delay)
		r.Dead = opts.Dead
	}
	var a struct {
		Nacked int          `json:"nacked"`
		Errors []wireFailed `json:"errors"`
	}
	if err := c.do(ctx, &r, &a); err != nil {
		return nil, err
	}
	return manyOf("nack", a.Nacked, a.Errors), nil
}

// Ack finishes a job this connection holds. result (nil for none) is
// kept for Wait and JobInfo; it is encoded like a payload.
func (c *Conn) Ack(ctx context.Context, id string, result any) error {
	r := request{Op: "ack", ID: id}
	if result != nil {
		res, err := marshalJSON("result", result)
		if err != nil {
			return err
		}
		r.Result = res
	}
	return c.do(ctx, &r, nil)
}

// NackOptions are the optional fields of a nack.
type NackOptions struct {
	Error string        // why it failed (kept as the job's error)
	Delay time.Duration // before the retry; 0: exponential backoff, NoWait: at once
	Dead  bool          // bury the job now, whatever attempts are left
}

// Nack gives back a job this connection holds as failed. The attempt is
// used: the job is retried after a delay, or dead once its attempts are
// used up. It returns the job's new state ("delayed", "queued", "dead").
func (c *Conn) Nack(ctx context.Context, id string, opts *NackOptions) (string, error) {
	r := request{Op: "nack", ID: id}
	if opts != nil {
		r.Error = opts.Error
		r.DelayMs = ms(opts.Delay)
		r.Dead = opts.Dead
	}
	var a struct {
		State string `json:"state"`
	}
	err := c.do(ctx, &r, &a)
	return a.State, err
}

// Release gives back a job this connection holds without counting the
// delivery: for a worker that could not even start on it. The job goes to
// the back of its queue at once.
func (c *Conn) Release(ctx context.Context, id string) error {
	return c.do(ctx, &request{Op: "release", ID: id}, nil)
}

// Touch extends the reservation of a job this connection holds: it now
// runs ttr from now (0: the job's own TTR).
func (c *Conn) Touch(ctx context.Context, id string, ttr time.Duration) error {
	r := request{Op: "touch", ID: id}
	if ttr > 0 {
		r.TTRMs = ms(ttr)
	}
	return c.do(ctx, &r, nil)
}

// Cancel cancels a job and its non-final descendants; it returns how many
// jobs were cancelled. Workers holding one get a cancel event.
func (c *Conn) Cancel(ctx context.Context, id string) (int, error) {
	var a struct {
		Cancelled int `json:"cancelled"`
	}
	err := c.do(ctx, &request{Op: "cancel", ID: id}, &a)
	return a.Cancelled, err
}

// Outcome is how a job ended, as answered by Wait.
type Outcome struct {
	State  string          // "done", "dead", "cancelled" or "expired"
	Result json.RawMessage // for done: the ack's result, nil without one
	Error  string          // for dead: the last failure's text, "" without one
}

// Wait waits until the job is final and returns how it ended. timeout 0
// waits as long as it takes (or until ctx is done, which closes the
// connection); when it runs out Wait returns ErrTimeout; NoWait answers at
// once (ErrTimeout if the job is not final).
func (c *Conn) Wait(ctx context.Context, id string, timeout time.Duration) (*Outcome, error) {
	var a struct {
		State  string          `json:"state"`
		Result json.RawMessage `json:"result"`
		Error  *string         `json:"error"`
	}
	if err := c.do(ctx, &request{Op: "wait", ID: id, TimeoutMs: ms(timeout)}, &a); err != nil {
		return nil, err
	}
	o := &Outcome{State: a.State}
	if len(a.Result) > 0 && string(a.Result) != "null" {
		o.Result = a.Result
	}
	if a.Error != nil {
		o.Error = *a.Error
	}
	return o, nil
}

// JobInfo is everything the server knows about a job (the job op).
type JobInfo struct {
	ID          string          `json:"id"`
	Queue       string          `json:"queue"`
	State       string          `json:"state"` // delayed, queued, reserved, done, dead, cancelled, expired
	Attempt     int             `json:"attempt"`
	MaxAttempts int             `json:"max_attempts"`
	TTRMs       int64           `json:"ttr_ms"`
	Created     int64           `json:"created"`  // ms since the epoch
	Deadline    *int64          `json:"deadline"` // ms since the epoch, nil without one
	Parent      *string         `json:"parent"`
	Error       *string         `json:"error"`       // the last failure's text
	Result      json.RawMessage `json:"result"`      // the ack's result ("null" without one)
	Payload     json.RawMessage `json:"payload"`     // "null" once done, cancelled or expired
	Traceparent *string         `json:"traceparent"` // the W3C trace context, nil without one
}

// JobInfo returns the state of a job (ErrNotFound for an unknown id, or
// one finished too long ago).
func (c *Conn) JobInfo(ctx context.Context, id string) (*JobInfo, error) {
	var a struct {
		Job JobInfo `json:"job"`
	}
	if err := c.do(ctx, &request{Op: "job", ID: id}, &a); err != nil {
		return nil, err
	}
	return &a.Job, nil
}

// QueueOptions are the settings of Declare; zero values leave the setting
// to the server's default.
type QueueOptions struct {
	Capacity    int           // queued jobs before submits wait (default: --default-capacity)
	Unbuffered  bool          // capacity 0: a submit succeeds only when a fetch takes the job
	TTR         time.Duration // default TTR of the queue's jobs
	MaxAttempts int           // default max attempts of the queue's jobs
}

// QueueStats are a queue's settings and figures (Declare, QueueStats,
// Queues).
type QueueStats struct {
	Name              string `json:"name"`
	Capacity          int64  `json:"capacity"`
	TTRMs             int64  `json:"ttr_ms"`
	MaxAttempts       int64  `json:"max_attempts"`
	Depth             int64  `json:"depth"`
	Reserved          int64  `json:"reserved"`
	Delayed           int64  `json:"delayed"`
	Dead              int64  `json:"dead"`
	WaitingSubmitters int64  `json:"waiting_submitters"`
	WaitingFetchers   int64  `json:"waiting_fetchers"`
	Paused            bool   `json:"paused"`
	Closed            bool   `json:"closed"`
	Submitted         int64  `json:"submitted"`
	Delivered         int64  `json:"delivered"`
	Acked             int64  `json:"acked"`
	Nacked            int64  `json:"nacked"`
	Expired           int64  `json:"expired"`
	Cancelled         int64  `json:"cancelled"`
	RejectedFull      int64  `json:"rejected_full"`
	BlockedMs         int64  `json:"blocked_ms"`
	OldestAgeMs       int64  `json:"oldest_age_ms"`
}

// Declare creates queue with these settings, or checks that it has them:
// different settings are ErrConflict. opts may be nil.
func (c *Conn) Declare(ctx context.Context, queue string, opts *QueueOptions) (*QueueStats, error) {
	r := request{Op: "declare", Queue: queue}
	if opts != nil {
		if opts.Unbuffered {
			zero := int64(0)
			r.Capacity = &zero
		} else {
			r.Capacity = intp(opts.Capacity)
		}
		r.TTRMs = ms(opts.TTR)
		r.MaxAttempts = intp(opts.MaxAttempts)
	}
	var a struct {
		Queue QueueStats `json:"queue"`
	}
	if err := c.do(ctx, &r, &a); err != nil {
		return nil, err
	}
	if a.Queue.Name == "" {
		a.Queue.Name = queue
	}
	return &a.Queue, nil
}

// Pause stops deliveries from queue (submits are still accepted).
func (c *Conn) Pause(ctx context.Context, queue string) error {
	return c.do(ctx, &request{Op: "pause", Queue: queue}, nil)
}

// Resume undoes Pause.
func (c *Conn) Resume(ctx context.Context, queue string) error {
	return c.do(ctx, &request{Op: "resume", Queue: queue}, nil)
}

// CloseQueue closes queue: submits fail with ErrClosed, fetches drain
// what is queued and then fail with ErrClosed.
func (c *Conn) CloseQueue(ctx context.Context, queue string) error {
	return c.do(ctx, &request{Op: "close", Queue: queue}, nil)
}

// Kick brings up to count dead jobs of queue back with fresh attempts (0:
// every dead job) and returns how many.
func (c *Conn) Kick(ctx context.Context, queue string, count int) (int, error) {
	var a struct {
		Kicked int `json:"kicked"`
	}
	err := c.do(ctx, &request{Op: "kick", Queue: queue, Count: intp(count)}, &a)
	return a.Kicked, err
}

// QueueStats returns one queue's settings and figures.
func (c *Conn) QueueStats(ctx context.Context, queue string) (*QueueStats, error) {
	if queue == "" {
		return nil, errNoQueue
	}
	var a struct {
		Queue QueueStats `json:"queue"`
	}
	if err := c.do(ctx, &request{Op: "stats", Queue: queue}, &a); err != nil {
		return nil, err
	}
	a.Queue.Name = queue
	return &a.Queue, nil
}

// Stats returns the server's own stats, as the server sends them
// (uptime_s, connections, jobs, ...; see docs/operations.md).
func (c *Conn) Stats(ctx context.Context) (map[string]any, error) {
	var a struct {
		Server map[string]any `json:"server"`
	}
	err := c.do(ctx, &request{Op: "stats"}, &a)
	return a.Server, err
}

// QueuesPage lists up to count queues (0: the server's default, 1000)
// whose names sort after after ("" for the first page), in name order. next
// is "" on the last page, else the after of the next page.
func (c *Conn) QueuesPage(ctx context.Context, after string, count int) (queues []QueueStats, next string, err error) {
	var a struct {
		Queues json.RawMessage `json:"queues"`
		Next   string          `json:"next"`
	}
	if err := c.do(ctx, &request{Op: "queues", After: after, Count: intp(count)}, &a); err != nil {
		return nil, "", err
	}
	// An object in name order: decode it keeping that order.
	dec := json.NewDecoder(bytesReader(a.Queues))
	if _, err := dec.Token(); err != nil { // {
		return nil, "", err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, "", err
		}
		var q QueueStats
		if err := dec.Decode(&q); err != nil {
			return nil, "", err
		}
		q.Name, _ = t.(string)
		queues = append(queues, q)
	}
	return queues, a.Next, nil
}

// Queues lists every queue in name order, following the pages.
func (c *Conn) Queues(ctx context.Context) ([]QueueStats, error) {
	var all []QueueStats
	after := ""
	for {
		page, next, err := c.QueuesPage(ctx, after, 0)
		if err != nil {
			return all, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		after = next
	}
}
