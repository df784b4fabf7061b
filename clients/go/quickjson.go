package chanq

import (
	"bytes"
	"encoding/json"
	"time"
)

// quickJobs decodes the usual answer to a fetch,
// {"ok":true,"rid":N,"jobs":[{"id":...,"queue":...,"payload":...},...]},
// without encoding/json's reflection: it is what a Worker reads for every
// job. It returns false for anything it does not expect (an error answer,
// an escaped id, a value that is not JSON), which the caller then hands to
// encoding/json. Payloads are checked to be JSON and kept as slices of line
// (capped, so appending to one cannot overwrite the next): line must not be
// reused.
func quickJobs(line []byte) ([]*Job, bool) {
	if !bytes.HasPrefix(line, []byte(`{"ok":true,`)) {
		return nil, false
	}
	d := scanner{b: line, i: len(`{"ok":true,`)}
	var jobs []*Job
	seen := false
	for {
		key, ok := d.plainString()
		if !ok || !d.eat(':') {
			return nil, false
		}
		if string(key) == "jobs" {
			jobs, ok = d.jobs()
			seen = true
		} else {
			ok = d.value(0)
		}
		if !ok {
			return nil, false
		}
		if d.eat('}') {
			break
		}
		if !d.eat(',') {
			return nil, false
		}
	}
	d.space()
	return jobs, seen && d.i == len(line)
}

// quickPushed decodes the usual jobs event of a consume,
// {"event":"jobs","jobs":[...]}, as quickJobs does a fetch answer; false
// for anything else.
func quickPushed(line []byte) ([]*Job, bool) {
	const prefix = `{"event":"jobs","jobs":`
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return nil, false
	}
	d := scanner{b: line, i: len(prefix)}
	jobs, ok := d.jobs()
	if !ok || !d.eat('}') {
		return nil, false
	}
	d.space()
	return jobs, d.i == len(line)
}

// validJSON is json.Valid, faster: the same grammar, checked by scanner.
func validJSON(b []byte) bool {
	d := scanner{b: b}
	if !d.value(0) {
		return false
	}
	d.space()
	return d.i == len(b)
}

// scanner walks JSON text b from i. Whitespace is allowed between tokens.
type scanner struct {
	b     []byte
	i     int
	queue string // the last queue name decoded, reused for the next job
}

func (d *scanner) space() {
	for d.i < len(d.b) && (d.b[d.i] == ' ' || d.b[d.i] == '\t' || d.b[d.i] == '\n' || d.b[d.i] == '\r') {
		d.i++
	}
}

// eat consumes c (after whitespace) if it comes next.
func (d *scanner) eat(c byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *scanner) jobs() ([]*Job, bool) {
	if !d.eat('[') {
		return nil, false
	}
	jobs := make([]*Job, 0, bytes.Count(d.b[d.i:], []byte(`{"id":`)))
	if d.eat(']') {
		return jobs, true
	}
	for {
		j, ok := d.job()
		if !ok {
			return nil, false
		}
		jobs = append(jobs, j)
		if d.eat(']') {
			return jobs, true
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

func (d *scanner) job() (*Job, bool) {
	if !d.eat('{') {
		return nil, false
	}
	j := &Job{}
	if d.eat('}') {
		return j, true
	}
	for {
		key, ok := d.plainString()
		if !ok || !d.eat(':') {
			return nil, false
		}
		var n int64
		switch string(key) {
		case "id":
			var s []byte
			if s, ok = d.plainString(); ok {
				j.ID = string(s)
			}
		case "queue":
			var s []byte
			if s, ok = d.plainString(); ok {
				if string(s) != d.queue {
					d.queue = string(s)
				}
				j.Queue = d.queue
			}
		case "payload":
			d.space()
			start := d.i
			if ok = d.value(0); ok {
				j.Payload = json.RawMessage(d.b[start:d.i:d.i])
			}
		case "attempt":
			n, ok = d.integer()
			j.Attempt = int(n)
		case "ttr_ms":
			n, ok = d.integer()
			j.TTR = time.Duration(n) * time.Millisecond
		case "deadline":
			if d.literal("null") {
				break
			}
			if n, ok = d.integer(); ok {
				j.Deadline = time.UnixMilli(n)
			}
		case "traceparent":
			var s []byte
			if s, ok = d.plainString(); ok {
				j.Traceparent = string(s)
			}
		default:
			ok = d.value(0)
		}
		if !ok {
			return nil, false
		}
		if d.eat('}') {
			return j, true
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

// plainString reads a string without escapes and returns its bytes; false
// for an escaped one (left to encoding/json) or anything else.
func (d *scanner) plainString() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// rawString skips a string, escapes included (the opening quote is next).
func (d *scanner) rawString() bool {
	d.i++
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return true
		case c == '\\':
			if !d.escape() {
				return false
			}
			continue
		case c < 0x20:
			return false
		}
		d.i++
	}
	return false
}

// escape skips one escape sequence (the backslash is next).
func (d *scanner) escape() bool {
	if d.i+1 >= len(d.b) {
		return false
	}
	switch d.b[d.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		d.i += 2
		return true
	case 'u':
		if d.i+6 > len(d.b) {
			return false
		}
		for _, h := range d.b[d.i+2 : d.i+6] {
			if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
				return false
			}
		}
		d.i += 6
		return true
	}
	return false
}

func (d *scanner) integer() (int64, bool) {
	d.space()
	neg := d.i < len(d.b) && d.b[d.i] == '-'
	if neg {
		d.i++
	}
	start := d.i
	var n int64
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' && d.i-start < 18 {
		n = n*10 + int64(d.b[d.i]-'0')
		d.i++
	}
	if d.i == start || (d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E' || (d.b[d.i] >= '0' && d.b[d.i] <= '9'))) {
		return 0, false // not a plain int64 we can read: encoding/json decides
	}
	if neg {
		n = -n
	}
	return n, true
}

func (d *scanner) literal(s string) bool {
	d.space()
	if bytes.HasPrefix(d.b[d.i:], []byte(s)) {
		d.i += len(s)
		return true
	}
	return false
}

// number skips a JSON number.
func (d *scanner) number() bool {
	digits := func() bool {
		start := d.i
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
		}
		return d.i > start
	}
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++ // no digit may follow a leading zero
	} else if !digits() {
		return false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if !digits() {
			return false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if !digits() {
			return false
		}
	}
	return true
}

// maxDepth bounds the nesting value accepts, as encoding/json's does.
const maxDepth = 10000

// value skips any JSON value, checking its grammar.
func (d *scanner) value(depth int) bool {
	d.space()
	if d.i >= len(d.b) {
		return false
	}
	switch d.b[d.i] {
	case '"':
		return d.rawString()
	case '{':
		if depth >= maxDepth {
			return false
		}
		d.i++
		if d.eat('}') {
			return true
		}
		for {
			d.space()
			if d.i >= len(d.b) || d.b[d.i] != '"' || !d.rawString() || !d.eat(':') || !d.value(depth+1) {
				return false
			}
			if d.eat('}') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case '[':
		if depth >= maxDepth {
			return false
		}
		d.i++
		if d.eat(']') {
			return true
		}
		for {
			if !d.value(depth + 1) {
				return false
			}
			if d.eat(']') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	default:
		return d.number()
	}
}
