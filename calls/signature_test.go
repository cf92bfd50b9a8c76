package calls

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	testSecret = []byte("whsec_test")
	testNow    = time.Unix(1763712000, 0)
)

func TestSignKnownVector(t *testing.T) {
	// Computed independently with Python's hmac module.
	const want = "t=1763712000,v0=a53a10d2633c608d0c20d7a8869b8eeda424ea4c35bf67b0a62fc8e77cd801b8"
	if got := Sign(testSecret, testNow, []byte(`{"a":1}`)); got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestParseSignature(t *testing.T) {
	mac := strings.Repeat("ab", 32)
	other := strings.Repeat("0f", 32)
	tests := []struct {
		name    string
		header  string
		wantT   string
		wantTS  int64
		wantV0  int
		wantErr error
	}{
		{"plain", "t=1763712000,v0=" + mac, "1763712000", 1763712000, 1, nil},
		{"leading zeros and unknown keys", "t=0017,v1=xyz,v0=" + mac, "0017", 17, 1, nil},
		{"spaces", " t=17 , v0=" + mac, "", 0, 0, ErrSignatureMalformed},
		{"trailing comma", "t=17,v0=" + mac + ",", "", 0, 0, ErrSignatureMalformed},
		{"two v0", "v0=" + mac + ",t=5,v0=" + other, "5", 5, 2, nil},
		{"empty", "", "", 0, 0, ErrSignatureMissing},
		{"blank", " \t ", "", 0, 0, ErrSignatureMissing},
		{"no t", "v0=" + mac, "", 0, 0, ErrSignatureMalformed},
		{"no v0", "t=5", "", 0, 0, ErrSignatureMalformed},
		{"empty t", "t=,v0=" + mac, "", 0, 0, ErrSignatureMalformed},
		{"signed t", "t=+5,v0=" + mac, "", 0, 0, ErrSignatureMalformed},
		{"negative t", "t=-5,v0=" + mac, "", 0, 0, ErrSignatureMalformed},
		{"text t", "t=now,v0=" + mac, "", 0, 0, ErrSignatureMalformed},
		{"overflowing t", "t=99999999999999999999,v0=" + mac, "", 0, 0, ErrSignatureMalformed},
		{"two t", "t=5,t=6,v0=" + mac, "", 0, 0, ErrSignatureMalformed},
		{"bad hex", "t=5,v0=zz" + mac[2:], "", 0, 0, ErrSignatureMalformed},
		{"odd hex", "t=5,v0=" + mac[1:], "", 0, 0, ErrSignatureMalformed},
		{"short v0", "t=5,v0=abcd", "", 0, 0, ErrSignatureMalformed},
		{"empty v0", "t=5,v0=", "", 0, 0, ErrSignatureMalformed},
		{"no equals", "t=5,v0=" + mac + ",junk", "", 0, 0, ErrSignatureMalformed},
		{"garbage", "garbage", "", 0, 0, ErrSignatureMalformed},
		{"only commas", ",,,", "", 0, 0, ErrSignatureMalformed},
		{"upper-case v0", "t=5,v0=" + strings.ToUpper(mac), "", 0, 0, ErrSignatureMalformed},
		{"too long", "t=5,v0=" + mac + ",x=" + strings.Repeat("a", 4096), "", 0, 0, ErrSignatureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := ParseSignature(tt.header)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if sig.T != tt.wantT || sig.Timestamp != tt.wantTS || len(sig.V0) != tt.wantV0 {
				t.Fatalf("got T=%q Timestamp=%d len(V0)=%d, want %q %d %d",
					sig.T, sig.Timestamp, len(sig.V0), tt.wantT, tt.wantTS, tt.wantV0)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	body := readFixture(t, "post_call_transcription.json")
	oldSecret := []byte("whsec_old")
	otherMAC := strings.Repeat("00", 32)
	valid := Sign(testSecret, testNow, body)

	tests := []struct {
		name    string
		secrets [][]byte
		header  string
		body    []byte
		want    error
	}{
		{"valid", nil, valid, body, nil},
		{"wrong secret", nil, Sign([]byte("whsec_wrong"), testNow, body), body, ErrSignatureMismatch},
		{"changed body", nil, valid, append(body[:len(body):len(body)], ' '), ErrSignatureMismatch},
		{"empty body signed", nil, Sign(testSecret, testNow, nil), nil, nil},
		{"stale 31m", nil, Sign(testSecret, testNow.Add(-31*time.Minute), body), body, ErrSignatureExpired},
		{"old 29m", nil, Sign(testSecret, testNow.Add(-29*time.Minute), body), body, nil},
		{"future 6m", nil, Sign(testSecret, testNow.Add(6*time.Minute), body), body, ErrSignatureFuture},
		{"future 4m", nil, Sign(testSecret, testNow.Add(4*time.Minute), body), body, nil},
		{"far future", nil, "t=9223372036854775807,v0=" + otherMAC, body, ErrSignatureFuture},
		{"missing", nil, "", body, ErrSignatureMissing},
		{"garbage", nil, "sha256=deadbeef", body, ErrSignatureMalformed},
		{"bad hex", nil, "t=1763712000,v0=xyz", body, ErrSignatureMalformed},
		{"two v0 one valid", nil, "t=1763712000,v0=" + otherMAC + ",v0=" + valid[len("t=1763712000,v0="):], body, nil},
		{"two v0 none valid", nil, "t=1763712000,v0=" + otherMAC + ",v0=" + otherMAC, body, ErrSignatureMismatch},
		{"rotation old secret", [][]byte{testSecret, oldSecret}, Sign(oldSecret, testNow, body), body, nil},
		{"rotation new secret", [][]byte{testSecret, oldSecret}, valid, body, nil},
		{"rotation neither", [][]byte{testSecret, oldSecret}, Sign([]byte("x"), testNow, body), body, ErrSignatureMismatch},
		{"empty secret skipped", [][]byte{{}, testSecret}, valid, body, nil},
		{"no secrets", [][]byte{}, valid, body, ErrNoSecrets},
		{"only empty secrets", [][]byte{nil}, valid, body, ErrNoSecrets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := tt.secrets
			if secrets == nil {
				secrets = [][]byte{testSecret}
			}
			v := &Verifier{Secrets: secrets, Now: func() time.Time { return testNow }}
			err := v.Verify(tt.header, tt.body)
			if !errors.Is(err, tt.want) || (err != nil) != (tt.want != nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyLimits(t *testing.T) {
	body := []byte(`{}`)
	v := &Verifier{
		Secrets: [][]byte{testSecret},
		MaxAge:  time.Minute,
		MaxSkew: time.Second,
		Now:     func() time.Time { return testNow },
	}
	if err := v.Verify(Sign(testSecret, testNow.Add(-2*time.Minute), body), body); !errors.Is(err, ErrSignatureExpired) {
		t.Errorf("2m old with MaxAge 1m: %v, want ErrSignatureExpired", err)
	}
	if err := v.Verify(Sign(testSecret, testNow.Add(2*time.Second), body), body); !errors.Is(err, ErrSignatureFuture) {
		t.Errorf("2s ahead with MaxSkew 1s: %v, want ErrSignatureFuture", err)
	}
	if err := v.Verify(Sign(testSecret, testNow.Add(-59*time.Second), body), body); err != nil {
		t.Errorf("59s old with MaxAge 1m: %v", err)
	}
}

func TestVerifyDefaultClock(t *testing.T) {
	body := []byte(`{}`)
	v := &Verifier{Secrets: [][]byte{testSecret}}
	if err := v.Verify(Sign(testSecret, time.Now(), body), body); err != nil {
		t.Fatalf("Verify with time.Now: %v", err)
	}
}

// TestSignatureEdges pins how callgate reads the edges where ElevenLabs'
// SDKs differ from each other or from callgate (see ParseSignature for the
// reasons). sdk says what the JS and the Python SDK do with the same header.
func TestSignatureEdges(t *testing.T) {
	body := []byte(`{"type":"post_call_audio"}`)
	good := Sign(testSecret, testNow, body)
	ts, mac, _ := strings.Cut(strings.TrimPrefix(good, "t="), ",v0=")
	wrong := strings.Repeat("00", 32)
	at := func(d time.Duration) string { return Sign(testSecret, testNow.Add(d), body) }
	tests := []struct {
		name, header, sdk string
		want              error
	}{
		{"as ElevenLabs signs", good, "JS and Python accept", nil},
		{"v0 first", "v0=" + mac + ",t=" + ts, "JS and Python accept", nil},
		{"good v0 first of two", "t=" + ts + ",v0=" + mac + ",v0=" + wrong, "JS accepts (first), Python refuses (last)", nil},
		{"good v0 last of two", "t=" + ts + ",v0=" + wrong + ",v0=" + mac, "JS refuses (first), Python accepts (last)", nil},
		{"two t", "t=" + ts + ",t=" + ts + ",v0=" + mac, "JS reads the first, Python the last", ErrSignatureMalformed},
		{"upper-case hex", "t=" + ts + ",v0=" + strings.ToUpper(mac), "both refuse", ErrSignatureMalformed},
		{"space after comma", "t=" + ts + ", v0=" + mac, "both refuse", ErrSignatureMalformed},
		{"space around =", "t=" + ts + ",v0 = " + mac, "both refuse", ErrSignatureMalformed},
		{"unknown scheme next to v0", "t=" + ts + ",v1=abc,v0=" + mac, "both accept", nil},
		{"leading zeros in t", "t=0" + ts + ",v0=" + mac, "both accept if the MAC covers them; this one does not", ErrSignatureMismatch},
		{"29 minutes old", at(-29 * time.Minute), "both accept", nil},
		{"31 minutes old", at(-31 * time.Minute), "both refuse", ErrSignatureExpired},
		{"4 minutes ahead", at(4 * time.Minute), "both accept", nil},
		{"6 minutes ahead", at(6 * time.Minute), "both accept: they have no future bound", ErrSignatureFuture},
		{"a year ahead", at(365 * 24 * time.Hour), "both accept: they have no future bound", ErrSignatureFuture},
	}
	v := &Verifier{Secrets: [][]byte{testSecret}, Now: func() time.Time { return testNow }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Verify(tt.header, body)
			if !errors.Is(err, tt.want) || (err != nil) != (tt.want != nil) {
				t.Fatalf("Verify(%q) = %v, want %v (the SDKs: %s)", tt.header, err, tt.want, tt.sdk)
			}
		})
	}
}
