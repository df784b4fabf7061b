package chanq

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// TestEncodeRequest: the hand-written encoder gives JSON that
// encoding/json reads back to the same fields, strings escaped alike.
func TestEncodeRequest(t *testing.T) {
	n := int64(0)
	big := int64(31536000000)
	for _, s := range []string{"plain", "quote\\" + `"` + "back\\\\slash", "ctl\x00\x01\x1f\n\r\t", "bad utf8 \xff\xfe", "ünï ☃ \u2028\u2029 <&>", ""} {
		req := &request{Op: "submit", Rid: 18446744073709551615, Queue: "q", Queues: []string{"a", s},
			ID: s, Payload: json.RawMessage(`{"a":[1,"x"]}`), Error: s, Parent: s, Client: s, Token: s,
			After: s, Capacity: &n, TTRMs: &big, WaitMs: &n, Strict: true, Dead: true,
			Traceparent: s, Key: s, Priority: &n, RunAt: &big}
		var buf bytes.Buffer
		var scratch []byte
		must(t, encodeRequest(&buf, req, &scratch))
		line := buf.Bytes()
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not one line: %q", line)
		}
		var got, want map[string]any
		must(t, json.Unmarshal(line, &got))
		ref, err := json.Marshal(req)
		must(t, err)
		must(t, json.Unmarshal(ref, &want))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %v\nwant %v", s, got, want)
		}
		if !bytes.Contains(line, []byte(`<&>`)) && s == "ünï ☃ \u2028\u2029 <&>" {
			t.Fatalf("HTML-escaped: %s", line)
		}
	}
}

func TestParseRid(t *testing.T) {
	for line, want := range map[string]uint64{
		`{"ok":true,"rid":42,"id":"1"}`:   42,
		`{"ok":false,"rid":7,"error":{}}`: 7,
		`{"ok":true}`:                     0,
		`{}`:                              0,
		`{"ok":true,"rid":"x"}`:           0,
	} {
		got, _ := parseRid([]byte(line))
		if got != want {
			t.Errorf("parseRid(%s) = %d, want %d", line, got, want)
		}
	}
	for line, want := range map[string]string{
		`{"ok":true,"rid":1,"id":"123"}`:            "123",
		`{"ok":true,"rid":1,"id":"12","queue":"a"}`: "",
		`{"ok":false,"rid":1,"error":{"id":"1"}}`:   "",
		`{"ok":true,"rid":1,"id":"1\"x"}`:           "",
	} {
		got, _ := quickID([]byte(line))
		if got != want {
			t.Errorf("quickID(%s) = %q, want %q", line, got, want)
		}
	}
}
