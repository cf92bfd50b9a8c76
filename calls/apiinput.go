package calls

import (
	"errors"
	"fmt"
	"net/url"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
)

// apiUpdate is the body of POST /api/calls as it is read from outside.
type apiUpdate struct {
	CallSID        idString `json:"call_sid"`
	ConversationID idString `json:"conversation_id"`
	Status         Status   `json:"status"`
	Org            idString `json:"org"`
}

// updateShape is what the body of POST /api/calls must be, for messages.
const updateShape = "body must be a JSON object with call_sid and optional conversation_id, status, org"

// decodeUpdate reads the body of POST /api/calls: one JSON object of
// Update's fields, keys matched exactly, none unknown or repeated, ids
// exact (see inputOptions, idString). On error it returns the code to
// answer with: invalid_json for a body of the wrong shape, invalid_request
// for a repeated key or an id that is not valid UTF-8.
func decodeUpdate(body []byte) (Update, string, error) {
	var in apiUpdate
	if err := unmarshalInput(body, &in, json.RejectUnknownMembers(true)); err != nil {
		code := CodeInvalidJSON
		var syn *jsontext.SyntacticError
		if errors.As(err, &syn) && errors.Is(syn.Err, jsontext.ErrDuplicateName) {
			code = CodeInvalidRequest
		}
		return Update{}, code, fmt.Errorf("%s: %s", updateShape, inputProblem(err))
	}
	u := Update{Status: in.Status}
	for _, f := range []struct {
		id    idString
		name  string
		field *string
	}{
		{in.CallSID, "call_sid", &u.CallSID},
		{in.ConversationID, "conversation_id", &u.ConversationID},
		{in.Org, "org", &u.Org},
	} {
		s, err := f.id.strict(f.name)
		if err != nil {
			code := CodeInvalidRequest
			if f.id.notString {
				code = CodeInvalidJSON
			}
			return Update{}, code, fmt.Errorf("%s: %w", updateShape, err)
		}
		*f.field = s
	}
	return u, "", nil
}

// pathID returns the call id of a GET /api/calls/:id path exactly as the
// client wrote it, or an error when it cannot be one: not valid UTF-8, or
// not what ValidID accepts. echo matches routes on the escaped path when
// the request's path needs escaping to be written as sent (the id has %40
// for @, say) and then leaves the parameter escaped; otherwise it matches
// on the decoded path, and the parameter is decoded already.
func pathID(c echo.Context) (string, error) {
	id := c.Param("id")
	if c.Request().URL.RawPath != "" {
		var err error
		if id, err = url.PathUnescape(id); err != nil {
			return "", fmt.Errorf("the call id in the path is not percent-encoded correctly: %w", err)
		}
	}
	if !utf8.ValidString(id) {
		return "", errors.New("the call id in the path is not valid UTF-8")
	}
	if !ValidID(id) {
		return "", errors.New("the call id in the path " + idRule)
	}
	return id, nil
}
