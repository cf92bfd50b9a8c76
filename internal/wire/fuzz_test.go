package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzRead checks that no input crashes the readers, and that what Parse
// accepts is exactly what Build writes: Prefix, the id, the epoch if any,
// and the rest of the frame untouched.
func FuzzRead(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzRead.
	f.Add(sample)
	f.Fuzz(func(t *testing.T, frame []byte) {
		id, epoch, ok := Parse(frame)
		ns := PublishedAt(frame)
		name, named := EventName(frame)
		if named && utf8.Valid(frame) && !utf8.ValidString(name) {
			t.Fatalf("EventName(%q) = %q, not valid UTF-8", frame, name)
		}
		if !ok {
			if id != 0 || epoch != 0 || ns != 0 || named {
				t.Fatalf("not an event, yet Parse = %d, %d; PublishedAt = %d; EventName = %q, %v", id, epoch, ns, name, named)
			}
			return
		}
		if id <= 0 || epoch < 0 {
			t.Fatalf("Parse(%q) = %d, %d", frame, id, epoch)
		}
		_, _, end := head(frame)
		rebuilt := Build(id, epoch, frame[end:])
		explicitZero := epoch == 0 && bytes.HasPrefix(frame[len(Prefix)+len(strconv.FormatInt(id, 10)):], []byte(EpochSep))
		if !explicitZero && !bytes.Equal(rebuilt, frame) {
			t.Fatalf("Parse(%q) = %d, %d; rebuilt as %q", frame, id, epoch, rebuilt)
		}
		if ns != 0 {
			i := timeAt(frame)
			v, _, _ := bytes.Cut(frame[i:], []byte(`"`))
			at, err := time.Parse(time.RFC3339Nano, string(v))
			if err != nil || at.UnixNano() != ns {
				t.Fatalf("PublishedAt(%q) = %d; time.Parse(%q) = %v, %v", frame, ns, v, at, err)
			}
		}
	})
}

// FuzzBuild checks that every frame built of any strings, time and data is
// valid JSON that says exactly that, and that the readers find it.
func FuzzBuild(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzBuild.
	f.Fuzz(func(t *testing.T, id, epoch int64, event, sid, conv string, ns int64, data []byte) {
		if id <= 0 || epoch < 0 {
			return
		}
		// Data must be valid UTF-8 (Tail.Data); the strings need not be.
		data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
		if !json.Valid(data) {
			data, _ = json.Marshal(string(data))
		} else {
			var buf bytes.Buffer
			if json.Compact(&buf, data) != nil {
				t.Fatal("json.Compact failed on valid JSON")
			}
			data = buf.Bytes()
		}
		tail := Tail{Event: event, CallSID: sid, ConversationID: conv, Time: time.Unix(0, ns), Data: data}
		got := AppendTail(nil, tail)
		if want := marshalTail(t, tail); !bytes.Equal(got, want) {
			t.Fatalf("AppendTail(%+v)\n got %s\nwant %s", tail, got, want)
		}
		frame := Build(id, epoch, got)
		if !utf8.Valid(frame) {
			t.Fatalf("frame %q is not valid UTF-8", frame)
		}
		checkFrame(t, frame, id, epoch, tail)
	})
}
