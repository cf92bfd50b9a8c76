package callgate_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/callgate/callgate/internal/spectest"
)

// The protocol documents, docs/openapi.yaml and docs/asyncapi.yaml, are
// checked here on their own: valid documents, the schemas they share
// equal, and every code the server can answer with written in them.
// cmd/callgate's contract test holds a running gateway to them. (CI also
// runs the AsyncAPI parser on asyncapi.yaml: tools/asyncapi.)

func TestOpenAPIDocumentIsValid(t *testing.T) {
	h := spectest.OpenAPI(t)
	for _, e := range h.ValidateDocument() {
		t.Errorf("openapi.yaml: %s", e)
	}
	// The OpenAPI meta-schema leaves schemas to their dialect: each is
	// compiled, which checks it against JSON Schema 2020-12.
	schemas, _ := spectest.At(spectest.Decode(t, "openapi.yaml"), "components/schemas").(map[string]any)
	for name := range schemas {
		h.Schema(t, "#/components/schemas/"+name)
	}
}

// TestAsyncAPISchemasCompile compiles every schema of asyncapi.yaml, used
// by a message or not.
func TestAsyncAPISchemasCompile(t *testing.T) {
	s := spectest.AsyncAPI(t) // compiles every message's payload
	schemas, _ := spectest.At(s.Doc, "components/schemas").(map[string]any)
	if len(schemas) == 0 {
		t.Fatal("asyncapi.yaml has no schemas")
	}
	for name := range schemas {
		s.Schema(t, "#/components/schemas/"+name)
	}
}

// TestSpecsShareSchemas: the call record and the names both documents use
// are written twice, once in each; they must stay equal.
func TestSpecsShareSchemas(t *testing.T) {
	openapi := spectest.Decode(t, "openapi.yaml")
	asyncapi := spectest.Decode(t, "asyncapi.yaml")
	for _, name := range []string{"Call", "CallStatus", "Epoch", "EventName"} {
		a := spectest.At(openapi, "components/schemas/"+name)
		b := spectest.At(asyncapi, "components/schemas/"+name)
		if a == nil || !reflect.DeepEqual(a, b) {
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			t.Errorf("schema %s differs:\nopenapi.yaml  %s\nasyncapi.yaml %s", name, ja, jb)
		}
	}
}

// codeSources are the packages whose answers the documents describe.
var codeSources = []string{"gateway", "calls", "topics", "internal/httpapi", "cmd/callgate"}

// found is a code found in the source, and where.
type found struct {
	value string
	pos   string
}

// sourceCodes collects, from the non-test files of codeSources:
//
//   - socket: the gateway's exported Code* constants (error frame codes);
//   - http: every other Code*/code* string constant, the string
//     literals passed as the code of writeHTTPError and httpapi.Fail,
//     and those assigned to a variable named code;
//   - closes: the gateway's Close*/close* integer constants, and each
//     closeWith/end call's code and reason text;
//   - reasons: the gateway's reason* constants (unsubscribed reasons);
//   - health: the "status" values of map literals in cmd/callgate.
type codes struct {
	socket, http, reasons, health []found
	closeConsts                   []found
	closes                        []closeCall
}

type closeCall struct {
	code   int
	reason string
	pos    string
}

// gorillaCodes are the close codes gorilla/websocket names.
var gorillaCodes = map[string]int{
	"CloseNormalClosure": websocket.CloseNormalClosure, "CloseGoingAway": websocket.CloseGoingAway,
	"CloseProtocolError": websocket.CloseProtocolError, "CloseUnsupportedData": websocket.CloseUnsupportedData,
	"CloseNoStatusReceived": websocket.CloseNoStatusReceived, "CloseAbnormalClosure": websocket.CloseAbnormalClosure,
	"CloseInvalidFramePayloadData": websocket.CloseInvalidFramePayloadData, "ClosePolicyViolation": websocket.ClosePolicyViolation,
	"CloseMessageTooBig": websocket.CloseMessageTooBig, "CloseMandatoryExtension": websocket.CloseMandatoryExtension,
	"CloseInternalServerErr": websocket.CloseInternalServerErr, "CloseServiceRestart": websocket.CloseServiceRestart,
	"CloseTryAgainLater": websocket.CloseTryAgainLater, "CloseTLSHandshake": websocket.CloseTLSHandshake,
}

func sourceCodes(t *testing.T) codes {
	t.Helper()
	var out codes
	fset := token.NewFileSet()
	intConsts := map[string]int{}
	var calls []*ast.CallExpr
	for _, dir := range codeSources {
		pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			for _, f := range pkg.Files {
				ast.Inspect(f, func(n ast.Node) bool {
					switch n := n.(type) {
					case *ast.ValueSpec:
						for i, name := range n.Names {
							if i >= len(n.Values) {
								continue
							}
							lit, ok := n.Values[i].(*ast.BasicLit)
							if !ok {
								continue
							}
							at := fset.Position(lit.Pos()).String()
							id := name.Name
							switch {
							case lit.Kind == token.STRING && isPrefixed(id, "Code"):
								v, _ := strconv.Unquote(lit.Value)
								if dir == "gateway" && id[0] == 'C' {
									out.socket = append(out.socket, found{v, at})
								} else {
									out.http = append(out.http, found{v, at})
								}
							case lit.Kind == token.STRING && dir == "gateway" && isPrefixed(id, "reason"):
								v, _ := strconv.Unquote(lit.Value)
								out.reasons = append(out.reasons, found{v, at})
							case lit.Kind == token.INT && dir == "gateway" && isPrefixed(id, "Close"):
								v, _ := strconv.Atoi(lit.Value)
								intConsts[id] = v
								out.closeConsts = append(out.closeConsts, found{lit.Value, at})
							}
						}
					case *ast.AssignStmt:
						for i, lhs := range n.Lhs {
							if id, ok := lhs.(*ast.Ident); ok && id.Name == "code" && i < len(n.Rhs) {
								if v, ok := stringLit(n.Rhs[i]); ok {
									out.http = append(out.http, found{v, fset.Position(n.Pos()).String()})
								}
							}
						}
					case *ast.CompositeLit:
						if dir != "cmd/callgate" {
							break
						}
						for _, e := range n.Elts {
							kv, ok := e.(*ast.KeyValueExpr)
							if !ok {
								continue
							}
							if k, ok := stringLit(kv.Key); ok && k == "status" {
								if v, ok := stringLit(kv.Value); ok {
									out.health = append(out.health, found{v, fset.Position(kv.Pos()).String()})
								}
							}
						}
					case *ast.CallExpr:
						calls = append(calls, n)
					}
					return true
				})
			}
		}
	}
	for _, call := range calls {
		name := callName(call)
		at := fset.Position(call.Pos()).String()
		switch {
		case (name == "writeHTTPError" || name == "Fail") && len(call.Args) >= 3:
			if v, ok := stringLit(call.Args[2]); ok {
				out.http = append(out.http, found{v, at})
			}
		case (name == "closeWith" || name == "end") && len(call.Args) >= 2:
			reason, ok := stringLit(call.Args[1])
			if !ok {
				continue // end(code, text, drop) passing its own arguments on
			}
			code := -1
			switch c := call.Args[0].(type) {
			case *ast.SelectorExpr:
				if v, ok := gorillaCodes[c.Sel.Name]; ok {
					code = v
				}
			case *ast.CallExpr:
				if callName(c) == "closeCode" {
					continue // the echo of the client's own close code, read from its frame
				}
			case *ast.Ident:
				if c.Name == "code" {
					continue // the echo of the client's own close code
				}
				if v, ok := intConsts[c.Name]; ok {
					code = v
				}
			case *ast.BasicLit:
				if c.Value == "0" {
					continue // a stream's end without a close event: the client is gone
				}
				code, _ = strconv.Atoi(c.Value)
			}
			if code < 0 {
				t.Errorf("%s: close with a code this test cannot read: %s", at, exprString(fset, call.Args[0]))
				continue
			}
			out.closes = append(out.closes, closeCall{code, reason, at})
		}
	}
	return out
}

// isPrefixed reports whether id is prefix (or its lower-case form)
// followed by an upper-case letter: CodeX, codeX, CloseX.
func isPrefixed(id, prefix string) bool {
	lower := strings.ToLower(prefix[:1]) + prefix[1:]
	for _, p := range []string{prefix, lower} {
		if rest, ok := strings.CutPrefix(id, p); ok && rest != "" && rest[0] >= 'A' && rest[0] <= 'Z' {
			return true
		}
	}
	return false
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	v, err := strconv.Unquote(lit.Value)
	return v, err == nil
}

func callName(c *ast.CallExpr) string {
	switch f := c.Fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}

func exprString(fset *token.FileSet, e ast.Expr) string {
	return fmt.Sprintf("%T at %s", e, fset.Position(e.Pos()))
}

// strings returns the values of a list in a decoded document.
func listAt(t *testing.T, doc any, path string) []string {
	t.Helper()
	var out []string
	switch v := spectest.At(doc, path).(type) {
	case []any:
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
	case string:
		out = append(out, v)
	default:
		t.Fatalf("no list at %s", path)
	}
	return out
}

// TestEveryCodeIsInTheSpecs: a code the server can send that the documents
// do not list fails here, before any client meets it.
func TestEveryCodeIsInTheSpecs(t *testing.T) {
	src := sourceCodes(t)
	openapi := spectest.Decode(t, "openapi.yaml")
	asyncapi := spectest.Decode(t, "asyncapi.yaml")

	httpCodes := listAt(t, openapi, "components/schemas/Error/properties/code/enum")
	socketCodes := listAt(t, asyncapi, "components/schemas/ErrorFrame/properties/code/enum")
	if len(src.socket) == 0 || len(src.http) == 0 || len(src.closes) == 0 {
		t.Fatalf("found %d socket codes, %d HTTP codes, %d closes: the scan is broken", len(src.socket), len(src.http), len(src.closes))
	}
	for _, c := range src.socket {
		if !slices.Contains(socketCodes, c.value) {
			t.Errorf("%s: error frame code %q is not in asyncapi.yaml (ErrorFrame code enum)", c.pos, c.value)
		}
	}
	for _, c := range src.http {
		if !slices.Contains(httpCodes, c.value) {
			t.Errorf("%s: HTTP error code %q is not in openapi.yaml (Error code enum)", c.pos, c.value)
		}
	}
	reasons := listAt(t, asyncapi, "components/schemas/UnsubscribedFrame/properties/reason/enum")
	for _, r := range src.reasons {
		if !slices.Contains(reasons, r.value) {
			t.Errorf("%s: unsubscribed reason %q is not in asyncapi.yaml", r.pos, r.value)
		}
	}
	var health []string
	for _, p := range []string{"Health/properties/status/const", "Ready/properties/status/const", "NotReady/properties/status/enum"} {
		health = append(health, listAt(t, openapi, "components/schemas/"+p)...)
	}
	for _, h := range src.health {
		if !slices.Contains(health, h.value) {
			t.Errorf("%s: health status %q is not in openapi.yaml", h.pos, h.value)
		}
	}

	closeCodes, _ := spectest.At(asyncapi, "components/x-close-codes").(map[string]any)
	for _, c := range src.closeConsts {
		if closeCodes[c.value] == nil {
			t.Errorf("%s: close code %s is not in asyncapi.yaml (components.x-close-codes)", c.pos, c.value)
		}
	}
	for _, c := range src.closes {
		code := strconv.Itoa(c.code)
		if closeCodes[code] == nil {
			t.Errorf("%s: close code %s is not in asyncapi.yaml (components.x-close-codes)", c.pos, code)
			continue
		}
		if !slices.Contains(listAt(t, closeCodes[code], "reasons"), c.reason) {
			t.Errorf("%s: close %s with reason %q: the reason is not in asyncapi.yaml's x-close-codes", c.pos, code, c.reason)
		}
	}
	// Every documented close code is one some channel ends with, and
	// every channel's codes are documented.
	used := map[string]bool{}
	channels, _ := asyncapi["channels"].(map[string]any)
	for name, ch := range channels {
		for _, c := range listAt(t, ch, "x-close-codes") {
			if closeCodes[c] == nil {
				t.Errorf("channel %s lists close code %s, which components.x-close-codes does not describe", name, c)
			}
			used[c] = true
		}
	}
	for c := range closeCodes {
		if !used[c] && c != "1006" { // 1006 is never sent, only reported
			t.Errorf("close code %s is described but no channel lists it", c)
		}
	}
}

// TestDocumentsAreLinked: the README and PROTOCOL.md point to both
// documents.
func TestDocumentsAreLinked(t *testing.T) {
	for _, doc := range []string{"README.md", filepath.Join("docs", "PROTOCOL.md")} {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		b := string(raw)
		for _, spec := range []string{"openapi.yaml", "asyncapi.yaml"} {
			if !strings.Contains(b, spec+")") {
				t.Errorf("%s does not link %s", doc, spec)
			}
		}
	}
}
