package topics

import (
	"errors"
	"testing"
	"unicode/utf8"
)

func TestCanonicalEqualValues(t *testing.T) {
	for _, group := range [][]string{
		{`{"a":1,"b":[true,null,"x"]}`, "{ \"b\" : [ true , null , \"x\" ] ,\n \"a\" : 1.0 }", `{"b":[true,null,"\u0078"],"a":1e0}`},
		{`{"n":100}`, `{"n":1e2}`, `{"n":100.000}`},
		{`0`, `-0`, `0.0`},
		{`"<&>"`, `"\u003c\u0026\u003e"`},
		{`{"nested":{"z":1,"y":{"b":2,"a":1}}}`, `{"nested":{"y":{"a":1,"b":2},"z":1}}`},
	} {
		want, err := Canonical([]byte(group[0]))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range group[1:] {
			got, err := Canonical([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("Canonical(%s) = %s, Canonical(%s) = %s", doc, got, group[0], want)
			}
		}
	}
}

func TestCanonicalDifferentValues(t *testing.T) {
	for _, pair := range [][2]string{
		{`{"a":1}`, `{"a":"1"}`},
		{`[1,2]`, `[2,1]`},
		{`{"a":1.5}`, `{"a":1.25}`},
		{`{"a":null}`, `{}`},
		{`9007199254740993`, `9007199254740992`},
	} {
		a, _ := Canonical([]byte(pair[0]))
		b, _ := Canonical([]byte(pair[1]))
		if string(a) == string(b) {
			t.Errorf("%s and %s canonicalise alike: %s", pair[0], pair[1], a)
		}
	}
}

func TestCanonicalRejects(t *testing.T) {
	for _, doc := range []string{``, `{`, `{"a":1} {"b":2}`, `{"a":1}x`, `nul`, `1e999`} {
		if _, err := Canonical([]byte(doc)); !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("Canonical(%q): %v, want ErrInvalidJSON", doc, err)
		}
	}
}

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x",null,true,{"b":{}}]}`, `1e308`, `"\ud800"`, `[[[[]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Canonical(doc)
		if err != nil {
			return
		}
		// The canonical state is sent to sockets as it is.
		if !utf8.Valid(c) {
			t.Fatalf("Canonical(%q) = %q, not valid UTF-8", doc, c)
		}
		again, err := Canonical(c)
		if err != nil || string(again) != string(c) {
			t.Fatalf("not idempotent: %s -> %s (%v)", c, again, err)
		}
	})
}
