package http

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	llmtap "github.com/llmtap/llmtap/plugin"
)

// FuzzDecode: whatever a line of a records POST holds, decode does not
// panic, and a record it accepts has a valid id, a valid or no tenant, and
// as many write ends as write times.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"v":1,"request_id":"r1","start_unix_ns":1700000000000000000,"route":"chat","status":200}`,
		`{"v":1,"request_id":"a\tb","start_unix_ns":1}`,
		`{"v":1,"request_id":"r","tenant":"t\u0000","start_unix_ns":1}`,
		`{"v":1,"request_id":"r","start_unix_ns":1,"write_ends":[1,2],"write_ns":[1]}`,
		`{"v":2}`,
		`{not json`,
		`[1,2]`,
		`{"v":1,"request_id":"r","start_unix_ns":1e400}`,
		`{"v":1,"request_id":"r","start_unix_ns":1,"upstream":"b","attempts":[{"upstream":"a","status":503},{"upstream":"b","status":200}]}`,
		`{"v":1,"request_id":"r","start_unix_ns":1,"attempts":[{"upstream":"a b","error":"x"}]}`,
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, reason, err := decode(line)
		if err != nil {
			if rec != nil || reason == "" {
				t.Fatalf("refused with a record (%v) or without a reason (%q): %v", rec != nil, reason, err)
			}
			return
		}
		if !llmtap.ValidID(rec.RequestID) || (rec.Tenant != "" && !llmtap.ValidID(rec.Tenant)) {
			t.Fatalf("accepted id %q tenant %q", rec.RequestID, rec.Tenant)
		}
		if len(rec.WriteEnds) != len(rec.WriteNs) || rec.StartUnixNs <= 0 {
			t.Fatalf("accepted %d write ends for %d times, start %d", len(rec.WriteEnds), len(rec.WriteNs), rec.StartUnixNs)
		}
		if len(rec.Attempts) > llmtap.MaxUpstreams || (rec.Upstream != "" && !llmtap.ValidID(rec.Upstream)) {
			t.Fatalf("accepted %d attempts, upstream %q", len(rec.Attempts), rec.Upstream)
		}
		for _, a := range rec.Attempts {
			if !llmtap.ValidID(a.Upstream) || (a.Error != "" && !llmtap.ValidID(a.Error)) {
				t.Fatalf("accepted attempt %+v", a)
			}
		}
	})
}

// TestDecodeAttempts: the attempts of a route with upstreams are names the
// metrics and the table can take, and no more than a route has upstreams.
func TestDecodeAttempts(t *testing.T) {
	const head = `{"v":1,"request_id":"r","start_unix_ns":1,`
	for _, tt := range []struct {
		name, line, want string
	}{
		{"good", head + `"upstream":"b","attempts":[{"upstream":"a","error":"connect_error"},{"upstream":"b","status":200,"header_ns":5}]}`, ""},
		{"a bad upstream name", head + `"attempts":[{"upstream":"a\nb","status":200}]}`, "attempts[0]"},
		{"no upstream name", head + `"attempts":[{"status":200}]}`, "attempts[0]"},
		{"a bad error", head + `"attempts":[{"upstream":"a","error":"<script>"}]}`, "attempts[0]"},
		{"a bad status", head + `"attempts":[{"upstream":"a","status":70000}]}`, "attempts[0]"},
		{"a bad served upstream", head + `"upstream":"a b"}`, `upstream "a b"`},
		{"too many", head + `"attempts":[` + strings.Repeat(`{"upstream":"a"},`, llmtap.MaxUpstreams) + `{"upstream":"a"}]}`, "at most 8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, reason, err := decode([]byte(tt.line))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || reason != "bad_attempts" || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("reason %q, error %v; want bad_attempts naming %s", reason, err, tt.want)
			}
		})
	}
}

// FuzzDecodeAgreesWithStd: the wire record's decoder (goccy/go-json)
// accepts exactly the lines encoding/json accepts, and reads the same
// record from them.
func FuzzDecodeAgreesWithStd(f *testing.F) {
	for _, seed := range []string{
		`{"v":1,"request_id":"r1","start_unix_ns":1700000000000000000,"route":"chat","status":200,"response_head":"ZGF0YTogaGkKCg==","write_ends":[9],"write_ns":[5]}`,
		`{"v":1,"request_id":"r","path":"/a\u00e9\ud800","user_agent":"\xff\xfe","start_unix_ns":1}`,
		`{"v":1,"request_id":"r","start_unix_ns":1,"request_body":"not base64!"}`,
		`{"v":1,"request_id":"r","start_unix_ns":1,"status":"200"}`,
		`{"v":1,"request_id":"r","start_unix_ns":1,"status":2.5}`,
		`{"v":1,"request_id":"r","start_unix_ns":1,"streaming":1}`,
		`{"V":1,"Request_ID":"r","START_UNIX_NS":1}`,
		`{"v":1,"request_id":"r","start_unix_ns":1} trailing`,
		`{"v":1,"request_id":"r","request_id":"s","start_unix_ns":1}`,
		`{"v":1,"write_ends":null,"write_ns":[]}`,
		`{not json`,
		`null`,
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var std, got llmtap.Record
		stdErr := json.Unmarshal(line, &std)
		gotErr := unmarshalRecord(line, &got)
		if (stdErr == nil) != (gotErr == nil) {
			t.Fatalf("%q: encoding/json says %v, goccy/go-json %v", line, stdErr, gotErr)
		}
		if stdErr == nil && !reflect.DeepEqual(std, got) {
			t.Fatalf("%q: encoding/json reads\n%+v\ngoccy/go-json\n%+v", line, std, got)
		}
	})
}
