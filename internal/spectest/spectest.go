// Package spectest reads the protocol documents, docs/openapi.yaml and
// docs/asyncapi.yaml, for tests that hold a running gateway to them: HTTP
// requests and responses are validated with libopenapi-validator, socket
// frames against the JSON Schemas of the AsyncAPI messages. It also
// records which documented answers a test provoked, so that a test can
// tell which ones no test reaches.
package spectest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// Dir returns the directory of the documents.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "docs")
}

// Read returns a document as JSON, the YAML read as sigs.k8s.io/yaml
// reads it.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	y, err := os.ReadFile(filepath.Join(Dir(), name))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return j
}

// Decode returns a document decoded into generic values.
func Decode(t testing.TB, name string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(Read(t, name), &doc); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return doc
}

// At returns the value at the slash-separated path in doc, or nil.
func At(doc any, path string) any {
	for _, k := range strings.Split(strings.Trim(path, "/"), "/") {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[k]
	}
	return doc
}

// HTTP validates requests and responses against openapi.yaml.
type HTTP struct {
	mu sync.Mutex // the validator is used by one test at a time
	v  validator.Validator
	// Doc is the document's model.
	Doc libopenapi.Document
	// provoked holds "METHOD /path/{template} STATUS" for each answer
	// checked.
	provoked map[string]bool
}

var (
	httpOnce sync.Once
	httpSpec *HTTP
	httpErr  error
)

// OpenAPI returns the validator of openapi.yaml, built once per process.
func OpenAPI(t testing.TB) *HTTP {
	t.Helper()
	httpOnce.Do(func() {
		y, err := os.ReadFile(filepath.Join(Dir(), "openapi.yaml"))
		if err != nil {
			httpErr = err
			return
		}
		doc, err := libopenapi.NewDocument(y)
		if err != nil {
			httpErr = fmt.Errorf("openapi.yaml: %w", err)
			return
		}
		v, errs := validator.NewValidator(doc)
		if len(errs) > 0 {
			httpErr = fmt.Errorf("openapi.yaml: %v", errs)
			return
		}
		httpSpec = &HTTP{v: v, Doc: doc, provoked: make(map[string]bool)}
	})
	if httpErr != nil {
		t.Fatal(httpErr)
	}
	return httpSpec
}

// ValidateDocument checks the document against the OpenAPI 3.1
// specification's schema.
func (h *HTTP) ValidateDocument() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	if ok, errs := h.v.ValidateDocument(); !ok {
		for _, e := range errs {
			out = append(out, e.Error())
		}
	}
	return out
}

// Exchange is one HTTP request and the response to it, with both bodies.
type Exchange struct {
	// Op names the documented operation, "METHOD /path/{template}".
	Op           string
	Req          *http.Request
	ReqBody      []byte
	Resp         *http.Response
	RespBody     []byte
	CheckRequest bool // the request is a valid one: validate it too
}

// Check validates the response (and, when x.CheckRequest, the request)
// and records the answer as provoked.
func (h *HTTP) Check(t testing.TB, x Exchange) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.provoked[x.Op+" "+strconv.Itoa(x.Resp.StatusCode)] = true
	req := x.Req.Clone(x.Req.Context())
	req.Body = io.NopCloser(bytes.NewReader(x.ReqBody))
	resp := *x.Resp
	resp.Body = io.NopCloser(bytes.NewReader(x.RespBody))
	resp.Request = req
	var (
		ok   bool
		errs []*verrors.ValidationError
	)
	if x.CheckRequest {
		ok, errs = h.v.ValidateHttpRequestResponse(req, &resp)
	} else {
		ok, errs = h.v.ValidateHttpResponse(req, &resp)
	}
	if !ok {
		for _, e := range errs {
			t.Errorf("%s %s -> %d %s\n  does not match openapi.yaml: %s", x.Req.Method, x.Req.URL.RequestURI(), x.Resp.StatusCode, x.RespBody, e)
		}
	}
}

// Provoked returns the answers checked so far, "METHOD /path STATUS".
func (h *HTTP) Provoked() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps(h.provoked)
}

// Documented returns every documented answer, "METHOD /path STATUS".
func (h *HTTP) Documented(t testing.TB) []string {
	t.Helper()
	doc := Decode(t, "openapi.yaml")
	var out []string
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		ops, _ := item.(map[string]any)
		for method, op := range ops {
			if method == "parameters" || strings.HasPrefix(method, "x-") {
				continue
			}
			responses, _ := At(op, "responses").(map[string]any)
			for status := range responses {
				out = append(out, strings.ToUpper(method)+" "+path+" "+status)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Sockets validates socket frames against asyncapi.yaml.
type Sockets struct {
	// Doc is the document, decoded.
	Doc map[string]any
	// messages[channel][type] is the schema of the frame of that type a
	// channel carries, server or client.
	messages map[string]map[string]*jsonschema.Schema

	mu       sync.Mutex
	provoked map[string]bool
}

var (
	socketsOnce sync.Once
	socketsSpec *Sockets
	socketsErr  error
)

// docURL is where the AsyncAPI document is loaded for the schema
// compiler; $refs inside it are fragments of the same document.
const docURL = "file:///asyncapi.json"

// AsyncAPI returns the frame schemas of asyncapi.yaml, compiled once per
// process. Message payloads are AsyncAPI schemas, JSON Schema draft 7.
func AsyncAPI(t testing.TB) *Sockets {
	t.Helper()
	socketsOnce.Do(func() {
		socketsSpec, socketsErr = loadSockets(Read(t, "asyncapi.yaml"))
	})
	if socketsErr != nil {
		t.Fatal(socketsErr)
	}
	return socketsSpec
}

func loadSockets(raw []byte) (*Sockets, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	s := &Sockets{Doc: doc.(map[string]any), messages: make(map[string]map[string]*jsonschema.Schema),
		provoked: make(map[string]bool)}
	channels, _ := s.Doc["channels"].(map[string]any)
	for name, ch := range channels {
		s.messages[name] = make(map[string]*jsonschema.Schema)
		msgs, _ := At(ch, "messages").(map[string]any)
		for _, m := range msgs {
			ref, _ := At(m, "$ref").(string)
			msg := At(s.Doc, strings.TrimPrefix(ref, "#/"))
			payload, _ := At(msg, "payload/$ref").(string)
			typ, _ := At(s.Doc, strings.TrimPrefix(payload, "#/")+"/properties/type/const").(string)
			if typ == "" {
				// allOf of a frame schema: its type is in the first.
				first, _ := At(s.Doc, strings.TrimPrefix(payload, "#/")+"/allOf").([]any)
				if len(first) > 0 {
					r, _ := At(first[0], "$ref").(string)
					typ, _ = At(s.Doc, strings.TrimPrefix(r, "#/")+"/properties/type/const").(string)
				}
			}
			if typ == "" {
				return nil, fmt.Errorf("asyncapi.yaml: channel %s, message %s: no payload with a constant type", name, ref)
			}
			sch, err := c.Compile(docURL + payload)
			if err != nil {
				return nil, fmt.Errorf("asyncapi.yaml: %s: %w", payload, err)
			}
			s.messages[name][typ] = sch
		}
	}
	return s, nil
}

// Schema compiles the schema at pointer (a fragment, "#/components/…") of
// the AsyncAPI document.
func (s *Sockets) Schema(t testing.TB, pointer string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	if err := c.AddResource(docURL, s.Doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(docURL + pointer)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// Check validates one frame of channel ("calls" or "topic") and records
// it as provoked: its type, and an error frame's code. It returns the
// frame's type.
func (s *Sockets) Check(t testing.TB, channel string, raw []byte) string {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Errorf("%s frame %q is not JSON: %v", channel, raw, err)
		return ""
	}
	typ, _ := At(v, "type").(string)
	sch := s.messages[channel][typ]
	if sch == nil {
		t.Errorf("%s frame %s: asyncapi.yaml has no %q message on channel %s", channel, raw, typ, channel)
		return typ
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("%s frame %s does not match asyncapi.yaml: %v", channel, raw, err)
	}
	key := channel + " " + typ
	switch typ {
	case "error":
		code, _ := At(v, "code").(string)
		key += " " + code
	case "event":
		name, _ := At(v, "event").(string)
		key += " " + name
	}
	s.record(key)
	return typ
}

// CheckClose checks that a close the server made on channel, with code and
// reason, is documented: the code in the channel's x-close-codes, the
// reason among the code's reasons (a code without a reasons list has the
// WebSocket library's own texts).
func (s *Sockets) CheckClose(t testing.TB, channel string, code int, reason string) {
	t.Helper()
	codes, _ := At(s.Doc, "channels/"+channel+"/x-close-codes").([]any)
	if !slices.ContainsFunc(codes, func(c any) bool { return fmt.Sprint(c) == strconv.Itoa(code) }) {
		t.Errorf("channel %s closed with %d %q: not in its x-close-codes %v", channel, code, reason, codes)
	}
	def, _ := At(s.Doc, "components/x-close-codes/"+strconv.Itoa(code)).(map[string]any)
	if reasons, fixed := def["reasons"].([]any); fixed && !slices.Contains(reasons, any(reason)) {
		t.Errorf("channel %s closed with %d %q: reason not among %v", channel, code, reason, reasons)
	}
	s.record(channel + " close " + strconv.Itoa(code))
}

func (s *Sockets) record(key string) {
	s.mu.Lock()
	s.provoked[key] = true
	s.mu.Unlock()
}

// Provoked returns what Check and CheckClose saw: "channel type",
// "channel error code", "channel event name", "channel close code".
func (s *Sockets) Provoked() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps(s.provoked)
}

// Documented returns every server frame type, error code and close code
// of each channel, in the form Provoked uses. Client frames are left out.
func (s *Sockets) Documented() []string {
	var out []string
	for name, types := range s.messages {
		for typ := range types {
			switch {
			case clientFrame[typ]:
			case typ == "error":
				for _, code := range s.ErrorCodes(name) {
					out = append(out, name+" error "+code)
				}
			case typ == "event":
				events, _ := At(s.Doc, "components/schemas/EventName/enum").([]any)
				for _, e := range events {
					out = append(out, name+" event "+fmt.Sprint(e))
				}
			default:
				out = append(out, name+" "+typ)
			}
		}
		codes, _ := At(s.Doc, "channels/"+name+"/x-close-codes").([]any)
		for _, c := range codes {
			out = append(out, name+" close "+fmt.Sprint(c))
		}
	}
	sort.Strings(out)
	return out
}

var clientFrame = map[string]bool{"subscribe": true, "unsubscribe": true, "ping": true, "auth": true}

// ErrorCodes returns the codes an error frame of channel may carry: the
// last code enum on the way through its payload's allOf.
func (s *Sockets) ErrorCodes(channel string) []string {
	ref, _ := At(s.Doc, "channels/"+channel+"/messages/error/$ref").(string)
	payload, _ := At(s.Doc, strings.TrimPrefix(ref, "#/")+"/payload/$ref").(string)
	var codes []any
	var walk func(sch any)
	walk = func(sch any) {
		if r, ok := At(sch, "$ref").(string); ok {
			walk(At(s.Doc, strings.TrimPrefix(r, "#/")))
			return
		}
		if enum, ok := At(sch, "properties/code/enum").([]any); ok {
			codes = enum
		}
		parts, _ := At(sch, "allOf").([]any)
		for _, part := range parts {
			walk(part)
		}
	}
	walk(At(s.Doc, strings.TrimPrefix(payload, "#/")))
	out := make([]string, len(codes))
	for i, c := range codes {
		out[i] = fmt.Sprint(c)
	}
	return out
}

func maps(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Schema compiles the schema at pointer (a fragment, "#/components/…") of
// openapi.yaml: JSON Schema 2020-12, the dialect of OpenAPI 3.1. Compiling
// checks it against the dialect's meta-schema.
func (h *HTTP) Schema(t testing.TB, pointer string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Read(t, "openapi.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	const url = "file:///openapi.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url + pointer)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return sch
}
