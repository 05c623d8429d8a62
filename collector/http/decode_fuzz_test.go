package http

import (
	"encoding/json"
	"reflect"
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
	})
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
