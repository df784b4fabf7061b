package chanq

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// slowJobs decodes a fetch answer the way Fetch does without quickJobs.
func slowJobs(t *testing.T, line []byte) ([]*Job, error) {
	t.Helper()
	var a struct {
		Jobs []wireJob `json:"jobs"`
	}
	if err := decodeAnswer("fetch", line, &a); err != nil {
		return nil, err
	}
	jobs := make([]*Job, len(a.Jobs))
	for i, w := range a.Jobs {
		j := &Job{ID: w.ID, Queue: w.Queue, Payload: w.Payload, Attempt: w.Attempt,
			TTR: time.Duration(w.TTRMs) * time.Millisecond, Traceparent: w.Traceparent}
		if w.Deadline != nil {
			j.Deadline = time.UnixMilli(*w.Deadline)
		}
		jobs[i] = j
	}
	return jobs, nil
}

// TestQuickJobs: the fast fetch decoder gives what encoding/json gives for
// every answer it accepts, and declines (false) what it does not expect
// or what is not JSON, leaving it to encoding/json.
func TestQuickJobs(t *testing.T) {
	accepted := []string{
		`{"ok":true,"rid":7,"jobs":[]}`,
		`{"ok":true,"jobs":[]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"7355699943374848","queue":"mail","payload":{"to":"ann@example.org","n":[1,2.5e3,-0.1,true,false,null]},"attempt":1,"ttr_ms":30000}]}`,
		`{"ok":true,"rid":2,"jobs":[{"id":"1","queue":"q","payload":"x\"y\\z\u00e9\n","attempt":3,"ttr_ms":5,"deadline":1732752000000},{"id":"2","queue":"q","payload":null,"attempt":1,"ttr_ms":5,"deadline":null}]}`,
		`{"ok":true,"rid":3,"jobs":[{"id":"1","queue":"other","payload": { "spaced" : [ 1 , 2 ] } ,"attempt":1,"ttr_ms":1,"new_field":{"a":[{}]}}],"more":"x"}`,
		`{"ok":true,"rid":4,"jobs":[{"id":"1","queue":"a","payload":[],"attempt":1,"ttr_ms":1},{"id":"2","queue":"b","payload":{},"attempt":1,"ttr_ms":1}]}`,
		`{"ok":true,"rid":5,"jobs":[{"id":"1","queue":"a","payload":1,"attempt":1,"ttr_ms":1,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},{"id":"2","queue":"a","payload":2,"attempt":1,"ttr_ms":1}]}`,
	}
	for _, s := range accepted {
		line := []byte(s)
		got, ok := quickJobs(line)
		if !ok {
			t.Fatalf("declined: %s", s)
		}
		want, err := slowJobs(t, line)
		must(t, err)
		// encoding/json keeps RawMessage verbatim, like quickJobs.
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got %+v\nwant %+v", s, got, want)
		}
		for _, j := range got {
			if cap(j.Payload) != len(j.Payload) {
				t.Fatalf("payload %q can be appended to in place", j.Payload)
			}
			if !json.Valid(j.Payload) {
				t.Fatalf("payload %q is not JSON", j.Payload)
			}
		}
	}
	declined := []string{
		`{"ok":false,"rid":1,"error":{"code":"closed","message":"queue closed"}}`,
		`{"ok":true,"rid":1}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"a\"b","queue":"q","payload":1,"attempt":1,"ttr_ms":1}]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":tru,"attempt":1,"ttr_ms":1}]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":{"a":1,},"attempt":1,"ttr_ms":1}]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":"bad \x escape","attempt":1,"ttr_ms":1}]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":01x,"attempt":1,"ttr_ms":1}]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":1,"attempt":1.5,"ttr_ms":1}]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":1,"attempt":99999999999999999999,"ttr_ms":1}]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":[1,2`,
		`{"ok":true,"rid":1,"jobs":[]}x`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":"ctl` + "\x01" + `","attempt":1,"ttr_ms":1}]}`,
		`{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":"\u12G4","attempt":1,"ttr_ms":1}]}`,
	}
	for _, s := range declined {
		if jobs, ok := quickJobs([]byte(s)); ok {
			t.Fatalf("accepted %s as %+v", s, jobs)
		}
	}
	deep := `{"ok":true,"rid":1,"jobs":[{"id":"1","queue":"q","payload":` +
		string(bytes.Repeat([]byte("["), maxDepth+2)) + string(bytes.Repeat([]byte("]"), maxDepth+2)) +
		`,"attempt":1,"ttr_ms":1}]}`
	if _, ok := quickJobs([]byte(deep)); ok {
		t.Fatal("accepted a payload nested deeper than encoding/json allows")
	}
}

// TestQuickPushed: the fast decoder of a consume's jobs event gives what
// the fetch decoders give for the same jobs, and declines other events.
func TestQuickPushed(t *testing.T) {
	jobsText := `[{"id":"1","queue":"q","payload":{"a":[1,"x"]},"attempt":1,"ttr_ms":30000},{"id":"2","queue":"r","payload":"y","attempt":2,"ttr_ms":5,"deadline":1732752000000}]`
	got, ok := quickPushed([]byte(`{"event":"jobs","jobs":` + jobsText + `}`))
	if !ok {
		t.Fatal("declined a jobs event")
	}
	want, err := slowJobs(t, []byte(`{"ok":true,"jobs":`+jobsText+`}`))
	must(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	for _, s := range []string{
		`{"event":"cancel","id":"1"}`,
		`{"event":"consume_end","reason":"closed"}`,
		`{"event":"jobs","jobs":[]`,
		`{"event":"jobs","jobs":[],"more":1}`,
		`{"event":"jobs","jobs":[{"id":"1","queue":"q","payload":tru,"attempt":1,"ttr_ms":1}]}`,
	} {
		if jobs, ok := quickPushed([]byte(s)); ok {
			t.Fatalf("accepted %s as %+v", s, jobs)
		}
	}
}

// TestMarshalRaw: a json.RawMessage is sent as encoding/json would send
// it (compacted), without a copy when there is nothing to compact, and
// refused when it is not JSON.
func TestMarshalRaw(t *testing.T) {
	for _, s := range []string{`{"a":[1,"x y"]}`, "{ \"a\" :\n [1, \"x y\"] }", `"t\tab"`, `12`} {
		got, err := marshalJSON("payload", json.RawMessage(s))
		must(t, err)
		var ref bytes.Buffer
		enc := json.NewEncoder(&ref)
		enc.SetEscapeHTML(false)
		must(t, enc.Encode(json.RawMessage(s)))
		if want := bytes.TrimRight(ref.Bytes(), "\n"); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	}
	for _, s := range []string{`{"a":}`, "{\"a\":\n}", ``} {
		if got, err := marshalJSON("payload", json.RawMessage(s)); err == nil && s != `` {
			t.Fatalf("%q accepted as %s", s, got)
		}
	}
}

// validSeeds are JSON texts and near misses for validJSON.
var validSeeds = []string{
	`0`, `-0`, `01`, `-01`, `1.`, `.5`, `1.5e`, `1e+5`, `-1.25E-3`, `1e05`, `00`, `-`, `+1`,
	`"a"`, `"\"`, `"\u00e9"`, `"\u00G9"`, `"\q"`, "\"\x7f\xff\"", "\"\x1f\"",
	`true`, `tru`, `truex`, `null`, `nul`, `false`, `[]`, `[1,]`, `[,1]`, `{}`, `{"a"}`, `{"a":1,}`,
	`{"a":{"b":[1,{"c":null}]}}`, ` [ 1 , 2 ] `, "[1\t,\n2]", `{1:2}`, `[1 2]`, ``, ` `, `[`, `]`,
}

// TestValidJSON: validJSON agrees with json.Valid.
func TestValidJSON(t *testing.T) {
	for _, s := range validSeeds {
		if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", s, got, want)
		}
	}
	for _, n := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		for _, pair := range []string{"[]", `{"":}`} {
			s := strings.Repeat(pair[:len(pair)-1], n) + "1" + strings.Repeat(pair[len(pair)-1:], n)
			if pair == "[]" {
				s = strings.Repeat("[", n) + strings.Repeat("]", n)
			}
			if got, want := validJSON([]byte(s)), json.Valid([]byte(s)); got != want {
				t.Fatalf("nested %d deep in %s: validJSON %v, json.Valid %v", n, pair, got, want)
			}
		}
	}
}

// FuzzValidJSON: `go test -fuzz FuzzValidJSON` looks for texts on which
// validJSON and json.Valid disagree (plain `go test` runs the seeds).
func FuzzValidJSON(f *testing.F) {
	for _, s := range validSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}
