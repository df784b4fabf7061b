package chanq

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"sync"
	"time"
)

// Several servers: the nodes of a chanqd cluster (docs/cluster.md), seen
// as one. DialLeader finds the serving leader (each node's hello says its
// role and the leader's address); a Cluster keeps a connection to it and
// makes a call again on the next leader when the node it talks to is not
// the leader (not_leader: nothing was done) or dies.
//
// What a call lost with its connection becomes: a submit whose answer
// never came is submitted again on the new leader. It may have been
// committed before the leader died, so the job may then exist twice
// (at-least-once); idempotency keys (a submit's "key") make that safe
// once the server has them. Reads and the ops that are the same done
// twice (declare, pause, resume, close, cancel, wait, job, stats, fetch)
// are made again too. Ack, nack, touch, release and kick are not: a
// reservation belongs to the connection that got it, and when that dies
// the server gives the job back, so they return the error.

// ErrNotLeader is the code of a cluster node that is not the serving
// leader: it did nothing (see (*Error).Leader).
var ErrNotLeader error = codeError("not_leader")

// Backoff between rounds over the servers while no leader serves: short
// at first (an election takes about one election timeout), never long.
const (
	backoffFirst = 25 * time.Millisecond
	backoffMax   = 250 * time.Millisecond
	probeTimeout = 2 * time.Second // a node that does not answer hello by then is skipped
)

// Leader is the leader's client address a not_leader error names, or "".
func (e *Error) Leader() string {
	i := strings.LastIndex(e.Message, "leader: ")
	if i < 0 {
		return ""
	}
	addr := strings.TrimSpace(e.Message[i+len("leader: "):])
	if addr == "unknown" {
		return ""
	}
	return addr
}

// ParseServers splits "a:1,b:2,c:3" into addresses (blanks around them
// and empty items dropped).
func ParseServers(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ServersFromEnv returns CHANQ_SERVERS, else CHANQ_SERVER, else def: the
// same choice as the chanq CLI.
func ServersFromEnv(def string) string {
	if s := os.Getenv("CHANQ_SERVERS"); s != "" {
		return s
	}
	if s := os.Getenv("CHANQ_SERVER"); s != "" {
		return s
	}
	return def
}

// probe connects to one node and says hello: the connection when it
// serves (role "leader", or no role: a single chanqd), else the leader it
// names.
func probe(ctx context.Context, addr string, o Options) (*Conn, string, error) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	token, name := o.Token, o.ClientName
	o.Token, o.ClientName = "", ""
	if o.DialTimeout <= 0 || o.DialTimeout > probeTimeout {
		o.DialTimeout = probeTimeout
	}
	c, err := Dial(pctx, addr, &o)
	if err != nil {
		return nil, "", err
	}
	info, err := c.Hello(pctx, name, token)
	if err != nil {
		c.Close()
		return nil, "", err
	}
	c.info = info
	if info.Role == "" || info.Role == "leader" {
		return c, "", nil
	}
	c.Close()
	leader := ""
	if info.Leader != nil {
		leader = *info.Leader
	}
	return nil, leader, &Error{Op: "hello", Code: "not_leader",
		Message: fmt.Sprintf("%s is %s; leader: %s", addr, info.Role, orUnknown(leader))}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// DialLeader connects to the serving leader among servers (as for Dial
// each), trying prefer first when it is not "". A node that names the
// leader sends the search there at once; while none serves (an election)
// the servers are tried again after 25 ms, doubling to 250 ms, until ctx
// is done or opts.DialTimeout (default 10 s) has passed. A server without
// a role (a single chanqd) serves. An ErrUnauthorized ends the search.
func DialLeader(ctx context.Context, servers []string, prefer string, opts *Options) (*Conn, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if len(servers) == 0 {
		return nil, errors.New("chanq: no server address given")
	}
	limit := o.DialTimeout
	if limit <= 0 {
		limit = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	backoff := backoffFirst
	var last error
	for {
		order := servers
		if prefer != "" {
			order = append([]string{prefer}, servers...)
		}
		tried := map[string]bool{}
		for i := 0; i < len(order); i++ {
			addr := order[i]
			if tried[addr] {
				continue
			}
			tried[addr] = true
			c, leader, err := probe(ctx, addr, o)
			if c != nil {
				return c, nil
			}
			last = err
			if errors.Is(err, ErrUnauthorized) {
				return nil, err
			}
			if leader != "" && !tried[leader] {
				order = append(order[:i+1:i+1], append([]string{leader}, order[i+1:]...)...)
			}
		}
		// Jitter: many clients must not all knock on the new leader at once.
		pause := backoff/2 + time.Duration(rand.Int63n(int64(backoff/2)+1))
		if !sleep(ctx, pause) {
			return nil, fmt.Errorf("chanq: no serving leader among %s: %w (last: %v)",
				strings.Join(servers, ","), ctx.Err(), last)
		}
		if backoff *= 2; backoff > backoffMax {
			backoff = backoffMax
		}
		prefer = ""
	}
}

// dialAddr is Dial for one address, DialLeader for a comma-separated list.
func dialAddr(ctx context.Context, addr string, opts *Options) (*Conn, error) {
	servers := ParseServers(addr)
	if len(servers) > 1 {
		return DialLeader(ctx, servers, "", opts)
	}
	return Dial(ctx, addr, opts)
}

// Cluster is a client of a chanqd cluster: the Conn's ops, each made on
// the serving leader, following not_leader and failing over when the
// leader dies (see the notes on DialLeader for what is made again). Safe
// for concurrent use. Events go to Options.OnEvent of every connection.
type Cluster struct {
	servers []string
	opts    Options

	mu        sync.Mutex
	conn      *Conn
	gen       int
	failovers int
	resubmits int
}

// NewCluster connects to the leader among servers ("a:1,b:2" or several
// arguments to ParseServers' liking).
func NewCluster(ctx context.Context, servers []string, opts *Options) (*Cluster, error) {
	cl := &Cluster{servers: servers}
	if opts != nil {
		cl.opts = *opts
	}
	c, err := DialLeader(ctx, servers, "", &cl.opts)
	if err != nil {
		return nil, err
	}
	cl.conn = c
	return cl, nil
}

// Conn returns the connection in use now (to the leader, as far as
// known): for what a Cluster does not wrap, such as Consume.
func (cl *Cluster) Conn() *Conn {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.conn
}

// Failovers is how many times the connection was made again; Resubmits
// how many submits were made again after their answer was lost.
func (cl *Cluster) Failovers() int { cl.mu.Lock(); defer cl.mu.Unlock(); return cl.failovers }
func (cl *Cluster) Resubmits() int { cl.mu.Lock(); defer cl.mu.Unlock(); return cl.resubmits }

// Close closes the connection in use.
func (cl *Cluster) Close() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.conn.Close()
}

func (cl *Cluster) current(ctx context.Context) (*Conn, int, error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.conn.Err() != nil {
		if err := cl.replace(ctx, ""); err != nil {
			return nil, 0, err
		}
	}
	return cl.conn, cl.gen, nil
}

// replace, under mu: a new connection to the leader.
func (cl *Cluster) replace(ctx context.Context, prefer string) error {
	c, err := DialLeader(ctx, cl.servers, prefer, &cl.opts)
	if err != nil {
		return err
	}
	cl.conn.Close()
	cl.conn = c
	cl.gen++
	cl.failovers++
	return nil
}

// reconnect moves to the leader unless another goroutine did since gen.
func (cl *Cluster) reconnect(ctx context.Context, gen int, prefer string) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.gen != gen && cl.conn.Err() == nil {
		return nil
	}
	return cl.replace(ctx, prefer)
}

// run makes fn on the leader. again: may it be made again after its
// connection died without an answer.
func (cl *Cluster) run(ctx context.Context, again, submit bool, fn func(*Conn) error) error {
	// A node that keeps refusing (not_leader naming itself, shutting_down)
	// must not hold the call for ever: one search's time in all.
	limit := cl.opts.DialTimeout
	if limit <= 0 {
		limit = 10 * time.Second
	}
	deadline := time.Now().Add(limit)
	for {
		c, gen, err := cl.current(ctx)
		if err != nil {
			return err
		}
		err = fn(c)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		var e *Error
		switch {
		case errors.As(err, &e) && e.Code == "not_leader":
			err = cl.reconnect(ctx, gen, e.Leader())
		case errors.Is(err, ErrShuttingDown):
			err = cl.reconnect(ctx, gen, "")
		case errors.Is(err, ErrConnClosed) && again:
			if submit {
				cl.mu.Lock()
				cl.resubmits++
				cl.mu.Unlock()
			}
			err = cl.reconnect(ctx, gen, "")
		default:
			return err
		}
		if err != nil {
			return err
		}
	}
}

// Ping as Conn.Ping, on the leader.
func (cl *Cluster) Ping(ctx context.Context) error {
	return cl.run(ctx, true, false, func(c *Conn) error { return c.Ping(ctx) })
}

// Submit as Conn.Submit; made again on the new leader when the answer was
// lost with the old one (at-least-once).
func (cl *Cluster) Submit(ctx context.Context, queue string, payload any, opts *SubmitOptions) (string, error) {
	var id string
	err := cl.run(ctx, true, true, func(c *Conn) (err error) {
		id, err = c.Submit(ctx, queue, payload, opts)
		return err
	})
	return id, err
}

// SubmitResult as Conn.SubmitResult, made again like Submit: with a
// SubmitOptions.Key, a submit made twice this way answers the first job
// (Duplicate) instead of making a second.
func (cl *Cluster) SubmitResult(ctx context.Context, queues []string, payload any, opts *SubmitOptions) (Submitted, error) {
	var s Submitted
	err := cl.run(ctx, true, true, func(c *Conn) (err error) {
		s, err = c.SubmitResult(ctx, queues, payload, opts)
		return err
	})
	return s, err
}

// Fetch as Conn.Fetch; a fetch lost with its connection is made again
// (the server gives back what the dead connection had reserved). Ack the
// jobs through the same Cluster.
func (cl *Cluster) Fetch(ctx context.Context, queues []string, opts *FetchOptions) ([]*Job, error) {
	var jobs []*Job
	err := cl.run(ctx, true, false, func(c *Conn) (err error) {
		jobs, err = c.Fetch(ctx, queues, opts)
		return err
	})
	return jobs, err
}

// Ack as Conn.Ack; not made again after a failover (the reservation died
// with the connection, and the server gives the job back).
func (cl *Cluster) Ack(ctx context.Context, id string, result any) error {
	return cl.run(ctx, false, false, func(c *Conn) error { return c.Ack(ctx, id, result) })
}

// AckMany as Conn.AckMany; not made again after a failover.
func (cl *Cluster) AckMany(ctx context.Context, ids []string) (*Many, error) {
	var m *Many
	err := cl.run(ctx, false, false, func(c *Conn) (err error) {
		m, err = c.AckMany(ctx, ids)
		return err
	})
	return m, err
}

// Nack as Conn.Nack; not made again after a failover.
func (cl *Cluster) Nack(ctx context.Context, id string, opts *NackOptions) (string, error) {
	var state string
	err := cl.run(ctx, false, false, func(c *Conn) (err error) {
		state, err = c.Nack(ctx, id, opts)
		return err
	})
	return state, err
}

// Release as Conn.Release; not made again after a failover.
func (cl *Cluster) Release(ctx context.Context, id string) error {
	return cl.run(ctx, false, false, func(c *Conn) error { return c.Release(ctx, id) })
}

// Touch as Conn.Touch; not made again after a failover.
func (cl *Cluster) Touch(ctx context.Context, id string, ttr time.Duration) error {
	return cl.run(ctx, false, false, func(c *Conn) error { return c.Touch(ctx, id, ttr) })
}

// Cancel as Conn.Cancel.
func (cl *Cluster) Cancel(ctx context.Context, id string) (int, error) {
	var n int
	err := cl.run(ctx, true, false, func(c *Conn) (err error) {
		n, err = c.Cancel(ctx, id)
		return err
	})
	return n, err
}

// Wait as Conn.Wait.
func (cl *Cluster) Wait(ctx context.Context, id string, timeout time.Duration) (*Outcome, error) {
	var out *Outcome
	err := cl.run(ctx, true, false, func(c *Conn) (err error) {
		out, err = c.Wait(ctx, id, timeout)
		return err
	})
	return out, err
}

// JobInfo as Conn.JobInfo.
func (cl *Cluster) JobInfo(ctx context.Context, id string) (*JobInfo, error) {
	var info *JobInfo
	err := cl.run(ctx, true, false, func(c *Conn) (err error) {
		info, err = c.JobInfo(ctx, id)
		return err
	})
	return info, err
}

// Declare as Conn.Declare.
func (cl *Cluster) Declare(ctx context.Context, queue string, opts *QueueOptions) (*QueueStats, error) {
	var st *QueueStats
	err := cl.run(ctx, true, false, func(c *Conn) (err error) {
		st, err = c.Declare(ctx, queue, opts)
		return err
	})
	return st, err
}

// Pause as Conn.Pause.
func (cl *Cluster) Pause(ctx context.Context, queue string) error {
	return cl.run(ctx, true, false, func(c *Conn) error { return c.Pause(ctx, queue) })
}

// Resume as Conn.Resume.
func (cl *Cluster) Resume(ctx context.Context, queue string) error {
	return cl.run(ctx, true, false, func(c *Conn) error { return c.Resume(ctx, queue) })
}

// CloseQueue as Conn.CloseQueue.
func (cl *Cluster) CloseQueue(ctx context.Context, queue string) error {
	return cl.run(ctx, true, false, func(c *Conn) error { return c.CloseQueue(ctx, queue) })
}

// QueueStats as Conn.QueueStats.
func (cl *Cluster) QueueStats(ctx context.Context, queue string) (*QueueStats, error) {
	var st *QueueStats
	err := cl.run(ctx, true, false, func(c *Conn) (err error) {
		st, err = c.QueueStats(ctx, queue)
		return err
	})
	return st, err
}

// Stats as Conn.Stats.
func (cl *Cluster) Stats(ctx context.Context) (map[string]any, error) {
	var st map[string]any
	err := cl.run(ctx, true, false, func(c *Conn) (err error) {
		st, err = c.Stats(ctx)
		return err
	})
	return st, err
}
