package calls

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SignatureHeader is the HTTP header that carries an ElevenLabs webhook signature.
const SignatureHeader = "ElevenLabs-Signature"

// maxSignatureHeaderLen bounds the work spent on a header an attacker controls;
// a genuine one is about 80 bytes.
const maxSignatureHeaderLen = 4096

// Default limits. The 30 minutes are the ElevenLabs SDKs' own tolerance;
// the future bound is callgate's (see ParseSignature).
const (
	defaultSignatureMaxAge  = 30 * time.Minute
	defaultSignatureMaxSkew = 5 * time.Minute
)

// Errors returned by ParseSignature and Verifier.Verify. A receiver answers
// ErrNoSecrets with 5xx (so ElevenLabs retries once the gateway is fixed) and
// the others with 401.
var (
	ErrSignatureMissing   = errors.New("calls: signature header missing")
	ErrSignatureMalformed = errors.New("calls: signature header malformed")
	ErrSignatureExpired   = errors.New("calls: signature timestamp too old")
	ErrSignatureFuture    = errors.New("calls: signature timestamp too far in the future")
	ErrSignatureMismatch  = errors.New("calls: signature does not match")
	ErrNoSecrets          = errors.New("calls: no webhook secret configured")
)

// Signature is a parsed ElevenLabs-Signature header.
type Signature struct {
	// T is the timestamp exactly as sent; the HMAC covers these bytes, not
	// a re-formatting of Timestamp.
	T string
	// Timestamp is T in Unix seconds.
	Timestamp int64
	// V0 holds every decoded v0 value; ElevenLabs may send more than one.
	V0 [][]byte
}

// ParseSignature parses a header of the form "t=<unix seconds>,v0=<hex>".
// Errors wrap ErrSignatureMissing or ErrSignatureMalformed.
//
// ElevenLabs' SDKs (JS and Python) verify the same scheme but disagree at
// the edges; each edge is decided here for safety, not for leniency:
//
//   - Spelling is exact, as in both SDKs: parts are separated by a bare
//     comma, with no white space around parts, keys or values, and v0 is
//     64 lowercase hex digits. Every signer (ElevenLabs, openssl -hex,
//     hmac.hexdigest) writes exactly that; other spellings of the same MAC
//     would make a valid header malleable, for no sender's benefit.
//   - Exactly one t. The JS SDK reads the first and Python the last; a
//     header that two verifiers read differently is refused.
//   - Several v0 are allowed and one matching suffices. The JS SDK checks
//     only the first and Python only the last, so a sender moving from one
//     secret to another can sign with both only here; a forger gains
//     nothing from more guesses at a 256-bit MAC, and the header is at most
//     maxSignatureHeaderLen bytes.
//   - Unknown keys (v1=…) are ignored, as in both SDKs, so that a new
//     scheme can be added next to v0.
//   - t is plain decimal digits (leading zeros allowed: the MAC covers t as
//     sent). The SDKs have no future bound; Verifier has one (MaxSkew), so
//     a signature made with a clock far ahead cannot be replayed for hours.
func ParseSignature(header string) (Signature, error) {
	if len(header) > maxSignatureHeaderLen {
		return Signature{}, fmt.Errorf("%w: header is %d bytes, limit is %d",
			ErrSignatureMalformed, len(header), maxSignatureHeaderLen)
	}
	if strings.TrimSpace(header) == "" {
		return Signature{}, ErrSignatureMissing
	}
	var sig Signature
	haveT := false
	for i, rest, more := 0, header, true; more; i++ {
		var part string
		part, rest, more = strings.Cut(rest, ",")
		key, value, ok := strings.Cut(part, "=")
		if !ok || key == "" {
			return Signature{}, fmt.Errorf("%w: part %d is not key=value", ErrSignatureMalformed, i)
		}
		if strings.ContainsAny(part, " \t") {
			return Signature{}, fmt.Errorf("%w: part %d has white space", ErrSignatureMalformed, i)
		}
		switch key {
		case "t":
			if haveT {
				return Signature{}, fmt.Errorf("%w: more than one t", ErrSignatureMalformed)
			}
			ts, err := parseDigits(value)
			if err != nil {
				return Signature{}, fmt.Errorf("%w: t: %w", ErrSignatureMalformed, err)
			}
			sig.T, sig.Timestamp, haveT = value, ts, true
		case "v0":
			mac, err := parseLowerHexMAC(value)
			if err != nil {
				return Signature{}, fmt.Errorf("%w: v0: %w", ErrSignatureMalformed, err)
			}
			sig.V0 = append(sig.V0, mac)
		}
	}
	if !haveT {
		return Signature{}, fmt.Errorf("%w: no t", ErrSignatureMalformed)
	}
	if len(sig.V0) == 0 {
		return Signature{}, fmt.Errorf("%w: no v0", ErrSignatureMalformed)
	}
	return sig, nil
}

// parseLowerHexMAC decodes an HMAC-SHA256 written as 64 lowercase hex
// digits; hex.DecodeString alone would take upper case too.
func parseLowerHexMAC(s string) ([]byte, error) {
	if len(s) != 2*sha256.Size {
		return nil, fmt.Errorf("%d hex digits, want %d", len(s), 2*sha256.Size)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, errors.New("not lowercase hex")
		}
	}
	return hex.DecodeString(s)
}

// parseDigits accepts only plain decimal digits: strconv.ParseInt alone
// would also take signs, which no signer produces and the documents do not
// allow.
func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > maxIntLen {
		return 0, errors.New("empty or too long")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a decimal integer")
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// Verifier checks ElevenLabs webhook signatures. The zero value of each
// field other than Secrets picks a sensible default.
type Verifier struct {
	// Secrets are the webhook secrets to accept. Several are allowed so a
	// secret can be rotated without dropping webhooks; empty ones are skipped.
	Secrets [][]byte
	// MaxAge is how old a signature may be; zero (or less) means 30 minutes.
	MaxAge time.Duration
	// MaxSkew is how far in the future a signature may be, to tolerate clock
	// drift; zero (or less) means 5 minutes.
	MaxSkew time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	// macs keeps, per secret, HMACs keyed with it for reuse: keying one
	// costs two hash blocks and allocations every webhook would repeat.
	macsOnce sync.Once
	macs     []sync.Pool
}

// Verify checks that header is a fresh, valid signature of body under one of
// the secrets: Check, then Match.
func (v *Verifier) Verify(header string, body []byte) error {
	sig, err := v.Check(header)
	if err != nil {
		return err
	}
	return v.Match(sig, body)
}

// Check does every check that needs no body: the header parses and its
// timestamp is within the window. A receiver calls it before reading the
// body, so that a request that cannot be valid costs no more than its
// headers, and hashes a possibly large body only for a fresh signature.
func (v *Verifier) Check(header string) (Signature, error) {
	if !v.hasSecret() {
		return Signature{}, ErrNoSecrets
	}
	sig, err := ParseSignature(header)
	if err != nil {
		return Signature{}, err
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	nowSec := now().Unix()
	// Compare against now±limit rather than subtracting from Timestamp,
	// which can be near the int64 limit.
	if sig.Timestamp < nowSec-seconds(v.MaxAge, defaultSignatureMaxAge) {
		return Signature{}, fmt.Errorf("%w: t=%d, now=%d", ErrSignatureExpired, sig.Timestamp, nowSec)
	}
	if sig.Timestamp > nowSec+seconds(v.MaxSkew, defaultSignatureMaxSkew) {
		return Signature{}, fmt.Errorf("%w: t=%d, now=%d", ErrSignatureFuture, sig.Timestamp, nowSec)
	}
	return sig, nil
}

// Match reports whether sig, as Check returned it, signs body under one of
// the secrets: nil, or ErrSignatureMismatch.
func (v *Verifier) Match(sig Signature, body []byte) error {
	v.macsOnce.Do(func() {
		v.macs = make([]sync.Pool, len(v.Secrets))
		for i, secret := range v.Secrets {
			v.macs[i].New = func() any { return hmac.New(sha256.New, secret) }
		}
	})
	var sum [sha256.Size]byte
	for i, secret := range v.Secrets {
		if len(secret) == 0 {
			continue
		}
		mac := v.macs[i].Get().(hash.Hash)
		mac.Reset()
		writeSigned(mac, sig.T, body)
		want := mac.Sum(sum[:0])
		v.macs[i].Put(mac)
		for _, got := range sig.V0 {
			if hmac.Equal(want, got) {
				return nil
			}
		}
	}
	return ErrSignatureMismatch
}

// writeSigned writes what a signature covers, "<t>.<body>", to mac.
func writeSigned(mac hash.Hash, t string, body []byte) {
	io.WriteString(mac, t)
	mac.Write([]byte{'.'})
	mac.Write(body)
}

func (v *Verifier) hasSecret() bool {
	for _, s := range v.Secrets {
		if len(s) > 0 {
			return true
		}
	}
	return false
}

// seconds converts a limit to whole seconds, the resolution of t.
func seconds(d, def time.Duration) int64 {
	if d <= 0 {
		d = def
	}
	return int64(d / time.Second)
}

// Sign returns an ElevenLabs-Signature header value for body signed at t,
// as ElevenLabs would send it.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v0=" + hex.EncodeToString(signatureMAC(secret, ts, body))
}

// signatureMAC computes HMAC-SHA256 over "<t>.<body>".
func signatureMAC(secret []byte, t string, body []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	writeSigned(mac, t, body)
	return mac.Sum(nil)
}
