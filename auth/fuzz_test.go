package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary tokens to Verify. Random bytes almost never
// carry a valid signature, so each input is also verified re-signed with
// the secret: that lets the fuzzer reach the claim checks. Properties: no
// panic; every error is a short one-line reason; a nil error means claims
// within every documented limit, a token that was valid at now, and
// claims that Mint accepts and that survive a Mint/Verify round trip.
func FuzzVerify(f *testing.F) {
	exp := testNow.Unix() + 3600
	good, err := Mint(testSecret, Claims{Device: "d", App: "a", Groups: []string{"g"}, Expires: testNow.Add(time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	hs384, err := jwt.NewWithClaims(jwt.SigningMethodHS384, jwt.MapClaims{"sub": "d", "exp": exp}).SignedString(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		good,
		hs384,
		handToken(testSecret, `{"alg":"HS256"}`, fmt.Sprintf(`{"sub":"d","exp":%d.5,"x":[1,{}]}`, exp)),
		handToken(testSecret, `{"alg":"none"}`, fmt.Sprintf(`{"sub":"d","exp":%d}`, exp)),
		handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"d","exp":%d,"nbf":%d}`, exp, exp)),
		handToken(testSecret, hs256, fmt.Sprintf(`{"sub":1,"exp":%d,"groups":"g"}`, exp)),
		handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"d","exp":%d,"groups":["",null]}`, exp)),
		handToken(testSecret, hs256, `{"sub":"d","exp":1}`),
		handToken([]byte("wrong"), hs256, fmt.Sprintf(`{"sub":"d","exp":%d}`, exp)),
		"a.b.c",
		"...",
		"",
		"\x00",
		strings.Repeat("a", MaxTokenLen+1),
	} {
		f.Add([]byte(seed))
	}
	v := NewVerifier(testSecret)
	f.Fuzz(func(t *testing.T, token []byte) {
		checkVerify(t, v, token)
		if i := strings.LastIndexByte(string(token), '.'); i >= 0 {
			checkVerify(t, v, resign(token[:i]))
		}
	})
}

// resign appends a valid HS256 signature of signing (header "." payload).
func resign(signing []byte) []byte {
	mac := hmac.New(sha256.New, testSecret)
	mac.Write(signing)
	out := append(slices.Clip(signing), '.')
	return base64.RawURLEncoding.AppendEncode(out, mac.Sum(nil))
}

func checkVerify(t *testing.T, v *Verifier, token []byte) {
	c, err := v.Verify(token, testNow)
	if err != nil {
		if msg := err.Error(); msg == "" || len(msg) > 40 || strings.ContainsAny(msg, "\n:") {
			t.Fatalf("reason %q is not a short one-line reason", msg)
		}
		return
	}
	if len(token) > MaxTokenLen {
		t.Fatalf("accepted a token of %d bytes", len(token))
	}
	if c.Device == "" || len(c.Device) > MaxDeviceLen || len(c.App) > MaxAppLen || len(c.Groups) > MaxGroups {
		t.Fatalf("accepted claims out of limits: %+v", c)
	}
	for _, g := range c.Groups {
		if g == "" || len(g) > MaxGroupLen {
			t.Fatalf("accepted group %q", g)
		}
	}
	if !testNow.Before(c.Expires.Add(Leeway)) {
		t.Fatalf("accepted a token that expired at %v", c.Expires)
	}
	tok, err := Mint(testSecret, c)
	if err != nil {
		t.Fatalf("Mint refused claims that Verify accepted: %+v: %v", c, err)
	}
	again, err := v.Verify([]byte(tok), testNow)
	if err != nil {
		// Mint writes exp in whole seconds, rounding down, which can
		// take a token that expires within the leeway over its edge.
		floor := time.Unix(c.Expires.Unix(), 0)
		if err.Error() == "token expired" && !testNow.Before(floor.Add(Leeway)) {
			return
		}
		t.Fatalf("re-minted token refused: %v", err)
	}
	if again.Device != c.Device || again.App != c.App || !slices.Equal(again.Groups, c.Groups) {
		t.Fatalf("round trip changed claims: %+v -> %+v", c, again)
	}
}
