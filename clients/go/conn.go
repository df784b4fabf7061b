package chanq

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Options configure a connection. The zero value (or nil) is a plain TCP
// connection without hello.
type Options struct {
	// Token is sent in a hello right after connecting; needed when the
	// server runs with a --token-file.
	Token string
	// ClientName, when set, is sent in the hello as "client" (the server
	// logs it).
	ClientName string
	// TLS, when not nil, makes the connection use TLS with this
	// configuration (see TLSConfig for the usual CA and client certificate
	// files). Without ServerName, the host part of the address is checked.
	TLS *tls.Config
	// DialTimeout bounds connecting (TCP, TLS handshake and hello) on top
	// of Dial's context; 0 means 10 s.
	DialTimeout time.Duration
	// MaxInFlight is how many requests may wait for their answer at once
	// on the connection; more wait for a place (default 1024). It bounds
	// the memory of a burst of pipelined requests.
	MaxInFlight int
	// OnEvent, when set, is called for each event the server sends
	// (cancel, revoked, and the jobs a Consume pushes). It runs on the
	// connection's reading goroutine:
	// it must return quickly and must not wait for an answer on the same
	// connection (that answer is read by the goroutine it blocks).
	// Without OnEvent, events are dropped.
	OnEvent func(Event)
}

// Event is an unsolicited message about the jobs of this connection.
type Event struct {
	// "cancel" (the job was cancelled), "revoked" (its reservation
	// ended), "jobs" (Jobs pushed by Consume, reserved for this connection
	// as if fetched) or "consume_end" (the server ended the consume).
	Type   string
	ID     string // the job's id (cancel, revoked)
	Reason string // revoked: "ttr" or "deadline"; consume_end: "closed" or "shutting_down"
	Jobs   []*Job // jobs: the jobs pushed
}

// ServerInfo is the server's answer to hello.
type ServerInfo struct {
	Server   string `json:"server"`
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
	// A cluster node's (docs/cluster.md): "leader" when it serves, else
	// "follower", "candidate" or "unavailable"; "" from a single chanqd.
	Role string `json:"role,omitempty"`
	// The leader's client address as the node knows it, or nil.
	Leader *string `json:"leader,omitempty"`
}

// Conn is one connection to chanqd. It is safe for concurrent use: calls
// from several goroutines are pipelined on the connection (each request
// carries a rid and the answers come back in request order), so one Conn
// can carry many submits in flight at once.
//
// The server runs a connection's requests one after the other, so a
// request that waits on the server (a fetch waiting for a job, a submit
// waiting for room, a wait) holds back the requests sent after it on the
// same connection. Use a connection per blocking consumer; the Worker
// does.
//
// Reservations belong to the connection that fetched: ack, nack, release
// and touch must use it, and closing it gives its reserved jobs back.
//
// Cancellation: every method takes a context. If the context is done
// before the request is sent, the method returns ctx.Err() and nothing is
// sent. If it is done while the answer is awaited, the method returns
// ctx.Err() and the connection is closed: answers come in order, so an
// abandoned request would otherwise hold back every later one, and closing
// makes the server drop what the request was waiting for (and give back
// the connection's reserved jobs). Whether an abandoned request took
// effect is unknown (a submit may have been queued). Other calls on the
// connection then fail with ErrConnClosed. A deadline on the context is
// not sent to the server; blocking ops have their own timeouts.
type Conn struct {
	nc      net.Conn
	onEvent func(Event)
	info    ServerInfo

	slots chan struct{} // in-flight places

	mu      sync.Mutex // guards out, pending, rid, err
	out     *bytes.Buffer
	spare   *bytes.Buffer
	pending []*call
	head    int
	rid     uint64
	err     error // set once the connection is broken or closed
	scratch []byte

	wake chan struct{} // tells the writer there are bytes in out
	done chan struct{} // closed when the connection is finished
}

type call struct {
	rid  uint64
	line []byte
	err  error
	ch   chan struct{}
}

var callPool = sync.Pool{New: func() any { return &call{ch: make(chan struct{}, 1)} }}

// Dial connects to a chanqd at addr ("HOST:PORT", "[V6]:PORT" or
// "unix:PATH") and, if opts has a Token or ClientName, says hello. opts
// may be nil. ctx bounds the connecting only; cancelling it later does
// not affect the returned Conn.
func Dial(ctx context.Context, addr string, opts *Options) (*Conn, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 1024
	}
	dctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	network, address := "tcp", addr
	if strings.HasPrefix(addr, "unix:") {
		network, address = "unix", addr[len("unix:"):]
	}
	var nc net.Conn
	var err error
	if o.TLS != nil {
		cfg := o.TLS.Clone()
		if cfg.ServerName == "" && network == "tcp" {
			if host, _, e := net.SplitHostPort(address); e == nil {
				cfg.ServerName = host
			}
		}
		d := tls.Dialer{Config: cfg}
		nc, err = d.DialContext(dctx, network, address)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, network, address)
	}
	if err != nil {
		return nil, fmt.Errorf("chanq: dial %s: %w", addr, err)
	}
	c := &Conn{
		nc:      nc,
		onEvent: o.OnEvent,
		slots:   make(chan struct{}, o.MaxInFlight),
		out:     new(bytes.Buffer),
		spare:   new(bytes.Buffer),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	go c.writeLoop()
	go c.readLoop()
	if o.Token != "" || o.ClientName != "" {
		var r struct {
			ServerInfo
		}
		if err := c.do(dctx, &request{Op: "hello", Client: o.ClientName, Token: o.Token}, &r); err != nil {
			c.Close()
			return nil, err
		}
		c.info = r.ServerInfo
	}
	return c, nil
}

// Server returns the server's answer to the hello sent by Dial (zero when
// no hello was sent; see Hello).
func (c *Conn) Server() ServerInfo { return c.info }

// Close closes the connection. Requests waiting for their answer fail with
// ErrConnClosed; the server gives back the jobs this connection had
// reserved. Close may be called more than once.
func (c *Conn) Close() error {
	c.fail(nil)
	return nil
}

// fail breaks the connection with cause (nil: closed by us) and fails every
// pending call. The first cause wins.
func (c *Conn) fail(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = &connError{err: cause}
	pend := c.pending[c.head:]
	c.pending, c.head = nil, 0
	c.mu.Unlock()
	c.nc.Close()
	close(c.done)
	for _, p := range pend {
		p.err = c.err
		p.ch <- struct{}{}
	}
}

func (c *Conn) writeLoop() {
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		// Let the goroutines that are about to send queue their requests
		// too: one write for many pipelined requests.
		runtime.Gosched()
		c.mu.Lock()
		buf := c.out
		c.out, c.spare = c.spare, buf
		c.mu.Unlock()
		if buf.Len() == 0 {
			continue
		}
		_, err := c.nc.Write(buf.Bytes())
		buf.Reset()
		if err != nil {
			c.fail(err)
			return
		}
	}
}

var (
	okPrefix   = []byte(`{"ok":`)
	ridPrefix  = []byte(`"rid":`)
	truePrefix = []byte(`true,`)
)

func (c *Conn) readLoop() {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.fail(err)
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			continue
		}
		if jobs, ok := quickPushed(line); ok {
			if c.onEvent != nil {
				c.onEvent(Event{Type: "jobs", Jobs: jobs})
			}
			continue
		}
		if !bytes.HasPrefix(line, okPrefix) {
			var ev struct {
				Event  string    `json:"event"`
				ID     string    `json:"id"`
				Reason string    `json:"reason"`
				Jobs   []wireJob `json:"jobs"`
			}
			if json.Unmarshal(line, &ev) == nil && ev.Event != "" {
				if c.onEvent != nil {
					c.onEvent(Event{Type: ev.Event, ID: ev.ID, Reason: ev.Reason, Jobs: jobsOf(ev.Jobs)})
				}
				continue
			}
		}
		rid, hasRid := parseRid(line)
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		if c.head == len(c.pending) {
			c.mu.Unlock()
			c.fail(fmt.Errorf("unexpected line from the server: %.100q", line))
			return
		}
		p := c.pending[c.head]
		if hasRid && rid != p.rid {
			c.mu.Unlock()
			c.fail(fmt.Errorf("answer for rid %d while waiting for rid %d", rid, p.rid))
			return
		}
		c.pending[c.head] = nil
		c.head++
		if c.head == len(c.pending) {
			c.pending, c.head = c.pending[:0], 0
		}
		c.mu.Unlock()
		p.line = line
		p.ch <- struct{}{}
	}
}

// parseRid reads the rid the server echoes right after "ok" in its compact
// answers ({"ok":true,"rid":12,...}). An answer without one (a line the
// server could not read, like frame_too_large) belongs to the oldest
// request.
func parseRid(line []byte) (uint64, bool) {
	if !bytes.HasPrefix(line, okPrefix) {
		return 0, false
	}
	s := line[len(okPrefix):]
	if bytes.HasPrefix(s, truePrefix) {
		s = s[len(truePrefix):]
	} else if bytes.HasPrefix(s, []byte(`false,`)) {
		s = s[len(`false,`):]
	} else {
		return 0, false
	}
	if !bytes.HasPrefix(s, ridPrefix) {
		return 0, false
	}
	s = s[len(ridPrefix):]
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	v, err := strconv.ParseUint(string(s[:i]), 10, 64)
	return v, err == nil
}

// wireError is the error member of a failed answer.
type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// header is the part of every answer the transport looks at.
type header struct {
	OK    bool       `json:"ok"`
	Error *wireError `json:"error"`
}

// do sends req and decodes the answer into out (which may be nil). A
// failed answer becomes an *Error.
func (c *Conn) do(ctx context.Context, req *request, out any) error {
	line, err := c.roundTrip(ctx, req)
	if err != nil {
		return err
	}
	return decodeAnswer(req.Op, line, out)
}

func decodeAnswer(op string, line []byte, out any) error {
	if bytes.HasPrefix(line, []byte(`{"ok":true`)) {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(line, out); err != nil {
			return fmt.Errorf("chanq: %s: cannot decode the answer: %w", op, err)
		}
		return nil
	}
	var h header
	if err := json.Unmarshal(line, &h); err != nil {
		return fmt.Errorf("chanq: %s: cannot decode the answer: %w", op, err)
	}
	if h.OK {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(line, out); err != nil {
			return fmt.Errorf("chanq: %s: cannot decode the answer: %w", op, err)
		}
		return nil
	}
	if h.Error == nil {
		return fmt.Errorf("chanq: %s: answer is neither ok nor an error: %.100q", op, line)
	}
	return &Error{Op: op, Code: h.Error.Code, Message: h.Error.Message}
}

// roundTrip sends one request and returns its answer line.
func (c *Conn) roundTrip(ctx context.Context, req *request) ([]byte, error) {
	p, err := c.send(ctx, req)
	if err != nil {
		return nil, err
	}
	return c.await(ctx, p)
}

// send queues one request for writing and returns its pending call, to be
// given to await (exactly once). Requests are written, and answered, in
// the order of send.
func (c *Conn) send(ctx context.Context, req *request) (*call, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.connErr()
	}
	p := callPool.Get().(*call)
	p.line, p.err = nil, nil
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		callPool.Put(p)
		<-c.slots
		return nil, err
	}
	c.rid++
	req.Rid = c.rid
	p.rid = c.rid
	start := c.out.Len()
	if err := encodeRequest(c.out, req, &c.scratch); err != nil {
		c.out.Truncate(start)
		c.mu.Unlock()
		callPool.Put(p)
		<-c.slots
		return nil, err
	}
	c.pending = append(c.pending, p)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return p, nil
}

// await waits for the answer of a call from send. If ctx is done first,
// the request is abandoned and the connection closed (see Conn).
func (c *Conn) await(ctx context.Context, p *call) ([]byte, error) {
	defer func() { <-c.slots }()
	select {
	case <-p.ch:
	case <-ctx.Done():
		select {
		case <-p.ch: // the answer came at the same moment: use it
		default:
			// Abandon: the answer would hold back every later one. p is
			// left to fail(), which still signals its channel.
			c.fail(fmt.Errorf("request abandoned: %w", ctx.Err()))
			return nil, ctx.Err()
		}
	}
	line, err := p.line, p.err
	callPool.Put(p)
	return line, err
}

func (c *Conn) connErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return &connError{}
}

// Err returns nil while the connection is usable, else the error that
// ended it (errors.Is ErrConnClosed).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// request is every field a request may carry; zero values are left out
// except where pointers say otherwise.
type request struct {
	Op          string          `json:"op"`
	Rid         uint64          `json:"rid"`
	Queue       string          `json:"queue,omitempty"`
	Queues      []string        `json:"queues,omitempty"`
	ID          string          `json:"id,omitempty"`
	IDs         []string        `json:"ids,omitempty"`
	Ack         []string        `json:"ack,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       string          `json:"error,omitempty"`
	Parent      string          `json:"parent,omitempty"`
	Traceparent string          `json:"traceparent,omitempty"`
	Key         string          `json:"key,omitempty"`
	Client      string          `json:"client,omitempty"`
	Token       string          `json:"token,omitempty"`
	After       string          `json:"after,omitempty"`
	Capacity    *int64          `json:"capacity,omitempty"`
	TTRMs       *int64          `json:"ttr_ms,omitempty"`
	MaxAttempts *int64          `json:"max_attempts,omitempty"`
	DelayMs     *int64          `json:"delay_ms,omitempty"`
	DeadlineMs  *int64          `json:"deadline_ms,omitempty"`
	WaitMs      *int64          `json:"wait_ms,omitempty"`
	Priority    *int64          `json:"priority,omitempty"`
	RunAt       *int64          `json:"run_at,omitempty"`
	TimeoutMs   *int64          `json:"timeout_ms,omitempty"`
	Count       *int64          `json:"count,omitempty"`
	Prefetch    *int64          `json:"prefetch,omitempty"`
	Strict      bool            `json:"strict,omitempty"`
	Dead        bool            `json:"dead,omitempty"`
	Extra       map[string]any  `json:"-"`
}

// encodeRequest appends req as one line. The fields are written by hand
// (no reflection: this is the hot path of pipelined submits and acks);
// Payload and Result are already compact JSON from marshalJSON.
func encodeRequest(buf *bytes.Buffer, req *request, scratch *[]byte) error {
	if req.Extra != nil {
		return encodeExtra(buf, req)
	}
	b := (*scratch)[:0]
	b = append(b, `{"op":`...)
	b = appendString(b, req.Op)
	b = append(b, `,"rid":`...)
	b = strconv.AppendUint(b, req.Rid, 10)
	str := func(name, v string) {
		if v != "" {
			b = append(b, ',', '"')
			b = append(b, name...)
			b = append(b, '"', ':')
			b = appendString(b, v)
		}
	}
	num := func(name string, v *int64) {
		if v != nil {
			b = append(b, ',', '"')
			b = append(b, name...)
			b = append(b, '"', ':')
			b = strconv.AppendInt(b, *v, 10)
		}
	}
	raw := func(name string, v json.RawMessage) {
		if len(v) > 0 {
			b = append(b, ',', '"')
			b = append(b, name...)
			b = append(b, '"', ':')
			b = append(b, v...)
		}
	}
	list := func(name string, v []string) {
		if len(v) > 0 {
			b = append(b, ',', '"')
			b = append(b, name...)
			b = append(b, '"', ':', '[')
			for i, s := range v {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, s)
			}
			b = append(b, ']')
		}
	}
	str("queue", req.Queue)
	list("queues", req.Queues)
	str("id", req.ID)
	list("ids", req.IDs)
	list("ack", req.Ack)
	raw("payload", req.Payload)
	raw("result", req.Result)
	str("error", req.Error)
	str("parent", req.Parent)
	str("traceparent", req.Traceparent)
	str("key", req.Key)
	str("client", req.Client)
	str("token", req.Token)
	str("after", req.After)
	num("capacity", req.Capacity)
	num("ttr_ms", req.TTRMs)
	num("max_attempts", req.MaxAttempts)
	num("delay_ms", req.DelayMs)
	num("deadline_ms", req.DeadlineMs)
	num("wait_ms", req.WaitMs)
	num("priority", req.Priority)
	num("run_at", req.RunAt)
	num("timeout_ms", req.TimeoutMs)
	num("count", req.Count)
	num("prefetch", req.Prefetch)
	if req.Strict {
		b = append(b, `,"strict":true`...)
	}
	if req.Dead {
		b = append(b, `,"dead":true`...)
	}
	b = append(b, '}', '\n')
	buf.Write(b)
	if cap(b) <= 64<<10 {
		*scratch = b
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// without HTML escaping (invalid UTF-8 becomes U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// encodeExtra encodes a request of Conn.Request with encoding/json.
func encodeExtra(buf *bytes.Buffer, req *request) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	m := make(map[string]any, len(req.Extra)+2)
	for k, v := range req.Extra {
		m[k] = v
	}
	m["op"] = req.Op
	m["rid"] = req.Rid
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("chanq: %s: cannot encode the request: %w", req.Op, err)
	}
	return nil
}

// marshalJSON encodes a payload or result: json.RawMessage is taken as
// JSON text (validated and compacted), anything else goes through
// encoding/json.
func marshalJSON(what string, v any) (json.RawMessage, error) {
	if raw, ok := v.(json.RawMessage); ok {
		// What encoding/json would send for it, without its reflection:
		// the text itself when it is valid and has no whitespace to
		// compact away, else compacted (which checks it too).
		if bytes.IndexAny(raw, " \t\r\n") < 0 {
			if validJSON(raw) {
				return raw, nil
			}
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err == nil {
				return buf.Bytes(), nil
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("chanq: %s is not JSON: %w", what, err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// ms converts an optional duration: 0 leaves the field out, a negative one
// (NoWait) sends 0, anything else its milliseconds rounded up.
func ms(d time.Duration) *int64 {
	if d == 0 {
		return nil
	}
	v := int64(0)
	if d > 0 {
		v = int64((d + time.Millisecond - 1) / time.Millisecond)
	}
	return &v
}

func intp(n int) *int64 {
	if n == 0 {
		return nil
	}
	v := int64(n)
	return &v
}

// NoWait, given as an optional duration (submit's Wait, fetch's and wait's
// Timeout, nack's Delay), sends 0: do not wait at all (or, for a nack, no
// delay). Leaving a duration 0 leaves the field out, which means the
// server's default (see each field).
const NoWait time.Duration = -1

var errNoQueue = errors.New("chanq: no queue given")

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
