package calls

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Everything callgate decodes from outside (webhook bodies, the API's) is
// read with go-json-experiment/json, the prototype and mirror of Go's
// encoding/json/v2, rather than encoding/json, whose defaults do not fit
// input that selects calls:
//
//   - Keys match exactly. encoding/json matches them case-insensitively,
//     so {"call_sid":"mine","CALL_SID":"yours"} decoded as "yours" while
//     any exact reader (the sender's own code, say) sees "mine".
//   - An object with a repeated key is refused wherever it appears; with
//     encoding/json the last one silently won.
//   - Invalid UTF-8 inside strings is replaced by U+FFFD, as encoding/json
//     does, so that text from a provider survives one bad byte. Identifiers
//     are the exception: an idString that is not valid UTF-8 is refused,
//     never repaired, since repairing would make two distinct ids one.
var inputOptions = json.JoinOptions(jsontext.AllowInvalidUTF8(true))

// unmarshalInput decodes body into v with inputOptions.
func unmarshalInput(body []byte, v any, opts ...json.Options) error {
	return json.Unmarshal(body, v, append([]json.Options{inputOptions}, opts...)...)
}

// inputProblem says in a sentence what is wrong with a body that
// unmarshalInput refused.
func inputProblem(err error) string {
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		if errors.Is(syn.Err, jsontext.ErrDuplicateName) {
			return fmt.Sprintf("duplicate key %q in %s: a key may appear only once in an object",
				syn.JSONPointer.LastToken(), where(syn.JSONPointer.Parent()))
		}
		return fmt.Sprintf("invalid JSON at byte %d: %v", syn.ByteOffset, syn.Err)
	}
	var sem *json.SemanticError
	if errors.As(err, &sem) {
		if sem.Err != nil && sem.GoType == nil {
			return fmt.Sprintf("%s: %v", where(sem.JSONPointer), sem.Err)
		}
		if sem.JSONKind != 0 {
			return fmt.Sprintf("%s: unexpected JSON %s", where(sem.JSONPointer), sem.JSONKind)
		}
		return fmt.Sprintf("%s: %v", where(sem.JSONPointer), sem.Err)
	}
	return err.Error()
}

// where names a place in a body for a message: a JSON pointer, or "the
// body" for the top.
func where(p jsontext.Pointer) string {
	if p == "" {
		return "the body"
	}
	return string(p)
}

// idString is an identifier from outside, decoded exactly. A string that
// is not valid UTF-8 (raw, or an escaped lone surrogate) is marked invalid,
// never repaired. null is absent; an empty string is absent too.
type idString struct {
	s string
	// notString: the value was neither a string nor null.
	notString bool
	// invalid says why a non-empty string cannot identify a call; "" if
	// it can.
	invalid string
}

func (id *idString) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	*id = idString{}
	val, err := dec.ReadValue()
	if err != nil {
		return err
	}
	switch val.Kind() {
	case 'n':
		return nil
	case '"':
	default:
		id.notString = true
		return nil
	}
	s, err := jsontext.AppendUnquote(nil, val)
	switch {
	case err != nil:
		id.invalid = "is not valid UTF-8"
	case len(s) > 0 && !ValidID(string(s)):
		id.invalid = idRule
	}
	if id.invalid == "" {
		id.s = string(s)
	}
	return nil
}

// idRule is what ValidID asks of an identifier, for messages.
var idRule = fmt.Sprintf("must be 1 to %d bytes of UTF-8 without whitespace or control characters", MaxIDLength)

// strict returns the id, or an error naming field when the value was
// present and is not a usable id (not a string, or invalid).
func (id idString) strict(field string) (string, error) {
	switch {
	case id.notString:
		return "", fmt.Errorf("%s must be a string", field)
	case id.invalid != "":
		return "", fmt.Errorf("%s %s", field, id.invalid)
	}
	return id.s, nil
}

// loose returns the id, ignoring a value that is not a string (parts of a
// provider's payload whose shape callgate does not own), but not one that
// is an invalid string: an id that is there is exact or refused.
func (id idString) loose(field string) (string, error) {
	if id.notString {
		return "", nil
	}
	return id.strict(field)
}

// shaped decodes a T when the value has T's shape, and otherwise records
// that it had another, without failing: a part of a provider's payload
// that callgate does not act on must not make the whole body unusable,
// and where callgate does act on it, the caller decides.
type shaped[T any] struct {
	v     T
	wrong bool
}

func (s *shaped[T]) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	*s = shaped[T]{}
	val, err := dec.ReadValue() // syntax, repeated keys: checked here
	if err != nil {
		return err
	}
	if val.Kind() == 'n' {
		return nil
	}
	if json.Unmarshal(val, &s.v, inputOptions) != nil {
		*s = shaped[T]{wrong: true}
	}
	return nil
}

// validUTF8 returns the JSON value v with every string in valid UTF-8:
// invalid bytes and escaped lone surrogates become U+FFFD, and the value
// is compacted. v is valid JSON apart from that (as read with
// inputOptions).
func validUTF8(v jsontext.Value) (jsontext.Value, error) {
	var buf bytes.Buffer
	buf.Grow(len(v))
	enc := jsontext.NewEncoder(&buf, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))
	if err := enc.WriteValue(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
