// Package chanq is a client for chanqd, the chanq job-queue daemon: its
// newline-delimited JSON protocol over TCP (docs/protocol.md), with TLS and
// token auth, and a Worker that runs a function on the jobs of some queues.
// Standard library only.
//
// A producer:
//
//	c, err := chanq.Dial(ctx, "127.0.0.1:7420", nil)
//	if err != nil { ... }
//	defer c.Close()
//	id, err := c.Submit(ctx, "mail", map[string]string{"to": "ann@example.org"}, nil)
//	if errors.Is(err, chanq.ErrQueueFull) { ... }
//
// A worker:
//
//	w := &chanq.Worker{Addr: "127.0.0.1:7420", Queues: []string{"mail"}, Concurrency: 8,
//		Handler: func(ctx context.Context, job *chanq.Job) (any, error) {
//			return send(ctx, job.Payload) // nil error: ack; else nack
//		}}
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	err := w.Run(ctx) // returns once stopped and the running jobs are acked
//
// Every op of the protocol is a method of Conn; ops this package does not
// know go through Conn.Request. A Conn is safe for concurrent use: the
// requests of several goroutines are pipelined on it and their answers
// matched by rid. Server errors are *Error values, comparable with
// errors.Is to the sentinel of their code (ErrQueueFull, ErrNotFound, ...).
// Events (cancel, revoked, the jobs Consume pushes) go to Options.OnEvent.
// The Worker consumes: jobs are pushed to it and its acks are pipelined,
// so a job costs no round trip of its own. See Conn for what a
// cancelled context does (it abandons the request and closes the
// connection).
//
// Durations map to the protocol's millisecond fields, rounded up; a zero
// duration leaves the field out (the server's default), NoWait sends 0.
package chanq
