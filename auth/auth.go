// Package auth verifies the JSON Web Tokens that clients present to the
// gateway: HS256 with shared secrets, RS256 and ES256 with public keys from
// a PEM file or a JWKS URL, expiry required, audience and issuer checked
// when configured.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/MicahParks/keyfunc/v2"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"
)

// Identity is who a valid token says the client is.
type Identity struct {
	// User is the token's sub.
	User string
	// Name is the token's name claim, for display.
	Name string
	// Org is the tenant (the org claim); empty for none.
	Org string
	// Expires is the token's exp.
	Expires time.Time
}

// ErrInvalidToken wraps every reason a token is refused.
var ErrInvalidToken = errors.New("invalid token")

// Config says which tokens a Verifier accepts. At least one of Secrets,
// PublicKeyFile and JWKSURL must be set.
type Config struct {
	// Secrets verify HS256 tokens; several allow rotation.
	Secrets [][]byte
	// PublicKeyFile holds PEM public keys (RSA or ECDSA P-256) that
	// verify RS256 and ES256 tokens.
	PublicKeyFile string
	// JWKSURL serves a JSON Web Key Set for RS256 and ES256 tokens,
	// fetched at start and refreshed every JWKSRefresh (zero: 15m) and
	// when a token names an unknown key id (at most once a minute).
	JWKSURL     string
	JWKSRefresh time.Duration
	// Audience and Issuer, when set, must match aud and iss.
	Audience string
	Issuer   string
	// Leeway tolerates clock skew on exp, nbf and iat. Zero: 30s.
	Leeway time.Duration
	Logger *slog.Logger
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	parser  *jwt.Parser
	secrets []any
	keys    []any
	jwks    *keyfunc.JWKS
}

// claims are the claims callgate reads. The jwt parser decodes them with
// encoding/json, which would match "ORG" as org, let the last of a
// repeated claim win, and take "exp":"1893456000" as a date;
// UnmarshalJSON decodes them exactly instead (see decodeClaims).
type claims struct {
	Subject   string           `json:"sub"`
	Issuer    string           `json:"iss"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt *numericDate     `json:"exp"`
	NotBefore *numericDate     `json:"nbf"`
	IssuedAt  *numericDate     `json:"iat"`
	Name      string           `json:"name"`
	Org       string           `json:"org"`
}

var _ jwt.Claims = (*claims)(nil)

// UnmarshalJSON decodes the claims with go-json-experiment/json (Go's
// encoding/json/v2): names match exactly, a repeated name or invalid UTF-8
// refuses the token, and the dates must be numbers. Unknown claims are
// ignored.
func (c *claims) UnmarshalJSON(b []byte) error {
	type plain claims
	return jsonv2.Unmarshal(b, (*plain)(c))
}

func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.date(), nil }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.date(), nil }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.date(), nil }
func (c *claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// numericDate is RFC 7519's NumericDate: a JSON number of seconds since
// the epoch. jwt.NumericDate also takes a string of digits, which the RFC
// does not allow and which no issuer should send.
type numericDate struct{ jwt.NumericDate }

func (d *numericDate) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	val, err := dec.ReadValue()
	if err != nil {
		return err
	}
	if val.Kind() != '0' {
		return fmt.Errorf("a date claim must be a JSON number (RFC 7519 NumericDate), not %s", val.Kind())
	}
	return d.NumericDate.UnmarshalJSON(val)
}

// date returns d as the jwt package wants it; nil when absent.
func (d *numericDate) date() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}

// New returns a Verifier for cfg. With a JWKS URL it fetches the key set
// before returning; ctx bounds its background refresh.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	v := &Verifier{}
	for _, s := range cfg.Secrets {
		if len(s) > 0 {
			v.secrets = append(v.secrets, s)
		}
	}
	if cfg.PublicKeyFile != "" {
		keys, err := readPublicKeys(cfg.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		v.keys = keys
	}
	if cfg.JWKSURL != "" {
		log := cfg.Logger
		if log == nil {
			log = slog.Default()
		}
		refresh := cfg.JWKSRefresh
		if refresh <= 0 {
			refresh = 15 * time.Minute
		}
		jwks, err := keyfunc.Get(cfg.JWKSURL, keyfunc.Options{
			Ctx:               ctx,
			RefreshInterval:   refresh,
			RefreshRateLimit:  time.Minute,
			RefreshTimeout:    10 * time.Second,
			RefreshUnknownKID: true,
			RefreshErrorHandler: func(err error) {
				log.Warn("JWKS refresh failed; keeping the keys we have", "url", cfg.JWKSURL, "err", err)
			},
		})
		if err != nil {
			return nil, fmt.Errorf("fetch JWKS from %s: %w", cfg.JWKSURL, err)
		}
		v.jwks = jwks
	}
	var methods []string
	if len(v.secrets) > 0 {
		methods = append(methods, "HS256")
	}
	if len(v.keys) > 0 || v.jwks != nil {
		methods = append(methods, "RS256", "ES256")
	}
	if len(methods) == 0 {
		return nil, errors.New("auth: no JWT secret, public key file or JWKS URL")
	}
	leeway := cfg.Leeway
	if leeway <= 0 {
		leeway = 30 * time.Second
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithLeeway(leeway)}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Verify checks token and returns its identity. Errors wrap
// ErrInvalidToken and say why, without repeating the token.
func (v *Verifier) Verify(token string) (Identity, error) {
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.key); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no sub", ErrInvalidToken)
	}
	return Identity{User: c.Subject, Name: c.Name, Org: c.Org, Expires: c.ExpiresAt.Time}, nil
}

// key finds the keys that may have signed t.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case "HS256":
		return keySet(v.secrets), nil
	case "RS256", "ES256":
		if _, hasKID := t.Header["kid"]; v.jwks != nil && (hasKID || len(v.keys) == 0) {
			return v.jwks.Keyfunc(t)
		}
		var fitting []any
		for _, k := range v.keys {
			switch k.(type) {
			case *rsa.PublicKey:
				if t.Method.Alg() == "RS256" {
					fitting = append(fitting, k)
				}
			case *ecdsa.PublicKey:
				if t.Method.Alg() == "ES256" {
					fitting = append(fitting, k)
				}
			}
		}
		if len(fitting) == 0 {
			return nil, errors.New("no key for this algorithm")
		}
		return keySet(fitting), nil
	}
	return nil, fmt.Errorf("algorithm %s not accepted", t.Method.Alg())
}

func keySet(keys []any) jwt.VerificationKeySet {
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
	for i, k := range keys {
		set.Keys[i] = k
	}
	return set
}

// Close stops the JWKS refresh.
func (v *Verifier) Close() {
	if v.jwks != nil {
		v.jwks.EndBackground()
	}
}

// readPublicKeys reads every PEM public key in path.
func readPublicKeys(path string) ([]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read public keys: %w", err)
	}
	var keys []any
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key any
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s block: %w", path, block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PublicKey:
			keys = append(keys, k)
		case *ecdsa.PublicKey:
			keys = append(keys, k)
		default:
			return nil, fmt.Errorf("%s: %T keys are not supported (RSA or ECDSA P-256)", path, key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no PEM public key", path)
	}
	return keys, nil
}
