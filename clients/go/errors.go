package chanq

import (
	"errors"
	"fmt"
)

// Error is an error answered by the server: {"ok":false,"error":{...}}.
// Code is one of the protocol's error codes (docs/protocol.md) and Message
// the server's text. After an Error the connection stays usable and the
// server changed nothing (except for ErrInternal, where the change may have
// happened).
//
// Compare with the sentinel of its code:
//
//	if errors.Is(err, chanq.ErrQueueFull) { ... }
//
// and use errors.As to read the message:
//
//	var e *chanq.Error
//	if errors.As(err, &e) { log.Print(e.Code, e.Message) }
type Error struct {
	Op      string // the request's op, e.g. "submit"
	Code    string // the protocol's error code, e.g. "queue_full"
	Message string // the server's message
}

func (e *Error) Error() string {
	return fmt.Sprintf("chanq: %s: %s: %s", e.Op, e.Code, e.Message)
}

// Is reports whether target is the sentinel error of e's code.
func (e *Error) Is(target error) bool {
	s, ok := target.(codeError)
	return ok && string(s) == e.Code
}

// codeError is the type of the sentinels: only the code.
type codeError string

func (c codeError) Error() string { return "chanq: " + string(c) }

// The sentinel errors, one per error code of the protocol. An *Error is
// errors.Is the sentinel of its code.
var (
	ErrBadRequest    error = codeError("bad_request")     // malformed or mistyped request
	ErrFrameTooLarge error = codeError("frame_too_large") // request line over the server's --max-frame
	ErrUnknownOp     error = codeError("unknown_op")      // op not known to the server
	ErrUnauthorized  error = codeError("unauthorized")    // the server wants a token (Options.Token)
	ErrNotFound      error = codeError("not_found")       // no such job or queue
	ErrNotReserved   error = codeError("not_reserved")    // job not reserved by this connection
	ErrQueueFull     error = codeError("queue_full")      // no room in the queue in time
	ErrTimeout       error = codeError("timeout")         // a blocking request's time ran out
	ErrClosed        error = codeError("closed")          // queue closed (fetch: closed and drained)
	ErrCancelled     error = codeError("cancelled")       // job was cancelled
	ErrConflict      error = codeError("conflict")        // declare with other settings
	ErrTooLarge      error = codeError("too_large")       // payload or result over --max-job
	ErrLimit         error = codeError("limit")           // a server limit would be passed
	ErrShuttingDown  error = codeError("shutting_down")   // server is stopping
	ErrInternal      error = codeError("internal")        // server failure; the change may have happened
)

// ErrConnClosed is matched (errors.Is) by every error that comes from the
// connection rather than from the server: it was closed with Close, by a
// cancelled context, or it broke (the underlying I/O error is wrapped too).
// A connection that returned it is unusable; dial a new one.
var ErrConnClosed = errors.New("chanq: connection closed")

// connError is a transport failure: errors.Is ErrConnClosed, unwraps to the
// I/O error.
type connError struct{ err error }

func (e *connError) Error() string {
	if e.err == nil {
		return ErrConnClosed.Error()
	}
	return "chanq: connection closed: " + e.err.Error()
}
func (e *connError) Is(target error) bool { return target == ErrConnClosed }
func (e *connError) Unwrap() error        { return e.err }
