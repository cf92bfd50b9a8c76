package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/callgate/callgate/auth"
)

func claims(mut ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "u1", "name": "Ada", "org": "acme", "exp": time.Now().Add(time.Hour).Unix(), "aud": "callgate", "iss": "https://id.example.com"}
	for _, m := range mut {
		m(c)
	}
	return c
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHS256(t *testing.T) {
	v, err := auth.New(context.Background(), auth.Config{
		Secrets: [][]byte{[]byte("new"), []byte("old")}, Audience: "callgate", Issuer: "https://id.example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"new", "old"} {
		id, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), claims(), ""))
		if err != nil || id.User != "u1" || id.Name != "Ada" || id.Org != "acme" || id.Expires.IsZero() {
			t.Fatalf("secret %s: %+v %v", secret, id, err)
		}
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for name, token := range map[string]string{
		"wrong secret":  sign(t, jwt.SigningMethodHS256, []byte("other"), claims(), ""),
		"expired":       sign(t, jwt.SigningMethodHS256, []byte("new"), claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), ""),
		"no exp":        sign(t, jwt.SigningMethodHS256, []byte("new"), claims(func(c jwt.MapClaims) { delete(c, "exp") }), ""),
		"no sub":        sign(t, jwt.SigningMethodHS256, []byte("new"), claims(func(c jwt.MapClaims) { delete(c, "sub") }), ""),
		"wrong aud":     sign(t, jwt.SigningMethodHS256, []byte("new"), claims(func(c jwt.MapClaims) { c["aud"] = "other" }), ""),
		"wrong iss":     sign(t, jwt.SigningMethodHS256, []byte("new"), claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" }), ""),
		"alg none":      none,
		"HS384":         sign(t, jwt.SigningMethodHS384, []byte("new"), claims(), ""),
		"garbage":       "not.a.token",
		"empty":         "",
		"changed claim": tamper(sign(t, jwt.SigningMethodHS256, []byte("new"), claims(), "")),
	} {
		if _, err := v.Verify(token); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}
}

// tamper swaps the payload for one with another sub, keeping the signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload, _ := json.Marshal(claims(func(c jwt.MapClaims) { c["sub"] = "admin" }))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func writePEM(t *testing.T, keys ...any) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		pem.Encode(&b, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	path := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPEMKeys(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	v, err := auth.New(context.Background(), auth.Config{PublicKeyFile: writePEM(t, &rsaKey.PublicKey, &ecKey.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, rsaKey, claims(), "")); err != nil {
		t.Fatalf("RS256: %v", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, ecKey, claims(), "")); err != nil {
		t.Fatalf("ES256: %v", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, otherRSA, claims(), "")); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("unknown RSA key: %v", err)
	}
	// An HS256 token "signed" with the public key's bytes is refused:
	// without secrets HS256 is not an accepted algorithm.
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, der, claims(), "")); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("HS256 with the public key as secret: %v", err)
	}
	if _, err := auth.New(context.Background(), auth.Config{PublicKeyFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Fatal("missing key file accepted")
	}
}

func TestJWKS(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	set := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(set)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := auth.New(ctx, auth.Config{JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, key, claims(), "k1")); err != nil {
		t.Fatalf("JWKS key: %v", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, key, claims(), "k2")); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("unknown kid: %v", err)
	}
}

func TestNeedsAKey(t *testing.T) {
	if _, err := auth.New(context.Background(), auth.Config{}); err == nil {
		t.Fatal("a verifier without keys was created")
	}
}

// signRaw signs claims written as raw JSON with HS256, so that a test can
// send what jwt.MapClaims cannot: repeated names, exact spellings.
func signRaw(t *testing.T, secret, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(unsigned, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + enc.EncodeToString(sig)
}

// TestClaimsAreExact: dates are JSON numbers (RFC 7519 NumericDate), names
// match exactly and may not repeat.
func TestClaimsAreExact(t *testing.T) {
	v, err := auth.New(context.Background(), auth.Config{Secrets: [][]byte{[]byte("s")}, Audience: "callgate"})
	if err != nil {
		t.Fatal(err)
	}
	soon, past := time.Now().Add(time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	claimsJSON := func(extra string) string {
		return fmt.Sprintf(`{"sub":"u1","aud":"callgate","org":"acme",%s}`, extra)
	}
	for name, payload := range map[string]string{
		"exp as a string":    claimsJSON(fmt.Sprintf(`"exp":"%d"`, soon)),
		"nbf as a string":    claimsJSON(fmt.Sprintf(`"exp":%d,"nbf":"%d"`, soon, past)),
		"iat as a string":    claimsJSON(fmt.Sprintf(`"exp":%d,"iat":"%d"`, soon, past)),
		"exp as a bool":      claimsJSON(`"exp":true`),
		"expired, EXP later": claimsJSON(fmt.Sprintf(`"exp":%d,"EXP":%d`, past, soon)),
		"exp twice":          claimsJSON(fmt.Sprintf(`"exp":%d,"exp":%d`, past, soon)),
		"sub twice":          claimsJSON(fmt.Sprintf(`"exp":%d,"sub":"u2"`, soon)),
	} {
		if _, err := v.Verify(signRaw(t, "s", payload)); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}
	id, err := v.Verify(signRaw(t, "s", claimsJSON(fmt.Sprintf(`"exp":%d.5,"nbf":%d,"iat":%d,"ORG":"globex","Sub":"u9","custom":{"x":1}`, soon, past, past))))
	if err != nil || id.User != "u1" || id.Org != "acme" || id.Expires.Unix() != soon {
		t.Fatalf("exact claims with other spellings next to them: %+v %v, want u1 of acme", id, err)
	}
}
