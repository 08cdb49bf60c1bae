package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef-test")
	testNow    = time.Unix(1_800_000_000, 0)
)

// handToken builds a JWT without any JWT library: base64url(header) "."
// base64url(payload) "." base64url(HMAC-SHA256(secret, first two parts)).
func handToken(secret []byte, header, payload string) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// payloadExp is a minimal valid payload with extra fields spliced in.
func payloadExp(extra string) string {
	p := fmt.Sprintf(`{"sub":"dev-1","exp":%d`, testNow.Unix()+3600)
	if extra != "" {
		p += "," + extra
	}
	return p + "}"
}

const hs256 = `{"alg":"HS256","typ":"JWT"}`

func libToken(t testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("signing with %s: %v", method.Alg(), err)
	}
	return s
}

func TestMintVerifyRoundTrip(t *testing.T) {
	in := Claims{
		Device:  "device-42",
		App:     "chat",
		Groups:  []string{"room:1", "room:2"},
		Expires: testNow.Add(time.Hour + 300*time.Millisecond),
	}
	tok, err := Mint(testSecret, in)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	got, err := NewVerifier(testSecret).Verify([]byte(tok), testNow)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Device != in.Device || got.App != in.App || !slices.Equal(got.Groups, in.Groups) {
		t.Errorf("claims = %+v, want %+v", got, in)
	}
	if want := in.Expires.Truncate(time.Second); !got.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v (whole seconds)", got.Expires, want)
	}
}

func TestMintOmitsEmptyOptionalClaims(t *testing.T) {
	tok, err := Mint(testSecret, Claims{Device: "d", Expires: testNow.Add(time.Minute)})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatalf("decoding payload: %v", err)
	}
	if want := fmt.Sprintf(`{"exp":%d,"sub":"d"}`, testNow.Unix()+60); string(payload) != want {
		t.Errorf("payload = %s, want %s", payload, want)
	}
}

// TestVerifyForeignTokens checks tokens that other producers make: by
// hand, with typ missing, unknown claims and float dates, and by the JWT
// library with its registered claims.
func TestVerifyForeignTokens(t *testing.T) {
	exp := float64(testNow.Unix()) + 3600.75
	tests := []struct {
		name  string
		token string
		want  Claims
	}{
		{
			name: "hand-built, no typ, extra claims, float exp",
			token: handToken(testSecret, `{"alg":"HS256"}`, fmt.Sprintf(
				`{"iss":"biz","sub":"dev-7","aud":["a","b"],"iat":1.5e9,"jti":"x","custom":{"deep":[1,{"n":null}]},"exp":%.2f,"app":"live","groups":["g1"]}`, exp)),
			want: Claims{Device: "dev-7", App: "live", Groups: []string{"g1"},
				Expires: time.Unix(testNow.Unix()+3600, 750_000_000)},
		},
		{
			name:  "hand-built, exp in exponent form, extra header fields",
			token: handToken(testSecret, `{"kid":"k1","alg":"HS256","cty":"x"}`, `{"sub":"d","exp":1.9e9,"nbf":1.7e9}`),
			want:  Claims{Device: "d", Expires: time.Unix(1_900_000_000, 0)},
		},
		{
			name:  "null optional claims",
			token: handToken(testSecret, hs256, payloadExp(`"app":null,"groups":null,"nbf":null`)),
			want:  Claims{Device: "dev-1", Expires: time.Unix(testNow.Unix()+3600, 0)},
		},
		{
			name: "jwt library with registered claims",
			token: libToken(t, jwt.SigningMethodHS256, testSecret, jwt.RegisteredClaims{
				Subject:   "dev-9",
				Issuer:    "backend",
				Audience:  jwt.ClaimStrings{"longlink"},
				ExpiresAt: jwt.NewNumericDate(testNow.Add(time.Hour)),
				NotBefore: jwt.NewNumericDate(testNow.Add(-time.Minute)),
				IssuedAt:  jwt.NewNumericDate(testNow),
			}),
			want: Claims{Device: "dev-9", Expires: testNow.Add(time.Hour)},
		},
	}
	v := NewVerifier(testSecret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify([]byte(tt.token), testNow)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Device != tt.want.Device || got.App != tt.want.App ||
				!slices.Equal(got.Groups, tt.want.Groups) || !got.Expires.Equal(tt.want.Expires) {
				t.Errorf("claims = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	valid := handToken(testSecret, hs256, payloadExp(""))
	parts := strings.Split(valid, ".")
	// Changing the first signature character changes the decoded bytes;
	// the last one might only touch ignored padding bits.
	sig := []byte(parts[2])
	sig[0] ^= 'A' ^ 'B'
	if sig[0] == parts[2][0] {
		t.Fatal("signature unchanged")
	}
	tampered := handToken(testSecret, hs256, payloadExp(`"app":"x"`))
	tamperedParts := strings.Split(tampered, ".")
	exp := testNow.Unix()

	tests := []struct {
		name  string
		token string
		want  string
	}{
		{"empty", "", "missing token"},
		{"garbage", "not a token", "malformed token"},
		{"garbage segments", "a.b.c", "malformed token"},
		{"binary", "\x00\xff.\x01.\x02", "malformed token"},
		{"four segments", valid + ".x", "malformed token"},
		{"two segments", parts[0] + "." + parts[1], "malformed token"},
		{"header not json", handToken(testSecret, `alg=HS256`, payloadExp("")), "malformed token"},
		{"payload not json", handToken(testSecret, hs256, `sub=x`), "malformed token"},
		{"payload an array", handToken(testSecret, hs256, `["sub"]`), "malformed token"},
		{"huge", strings.Repeat("a", MaxTokenLen+1), "token too long"},

		{"HS384 with the shared secret", libToken(t, jwt.SigningMethodHS384, testSecret, jwt.MapClaims{"sub": "d", "exp": exp + 60}), "alg must be HS256"},
		{"HS512 with the shared secret", libToken(t, jwt.SigningMethodHS512, testSecret, jwt.MapClaims{"sub": "d", "exp": exp + 60}), "alg must be HS256"},
		{"ES256", libToken(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{"sub": "d", "exp": exp + 60}), "alg must be HS256"},
		{"none via library", libToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "d", "exp": exp + 60}), "alg must be HS256"},
		{"none by hand", strings.Join(strings.Split(handToken(testSecret, `{"alg":"none"}`, payloadExp("")), ".")[:2], ".") + ".", "alg must be HS256"},
		// Each of these carries a valid HMAC-SHA256 signature by the
		// shared secret: only the header's alg is wrong.
		{"RS256 header, HS256 signature", handToken(testSecret, `{"alg":"RS256"}`, payloadExp("")), "alg must be HS256"},
		{"none header, HS256 signature", handToken(testSecret, `{"alg":"none"}`, payloadExp("")), "alg must be HS256"},
		{"lower-case hs256", handToken(testSecret, `{"alg":"hs256"}`, payloadExp("")), "alg must be HS256"},
		{"alg missing", handToken(testSecret, `{"typ":"JWT"}`, payloadExp("")), "alg must be HS256"},
		{"alg empty", handToken(testSecret, `{"alg":""}`, payloadExp("")), "alg must be HS256"},
		{"alg not a string", handToken(testSecret, `{"alg":256}`, payloadExp("")), "alg must be HS256"},
		{"crit header", handToken(testSecret, `{"alg":"HS256","crit":["exp"]}`, payloadExp("")), "unsupported crit header"},

		{"bad signature", parts[0] + "." + parts[1] + "." + string(sig), "bad signature"},
		{"empty signature", parts[0] + "." + parts[1] + ".", "bad signature"},
		{"signature not base64", parts[0] + "." + parts[1] + ".!!", "malformed token"},
		{"tampered payload", parts[0] + "." + tamperedParts[1] + "." + parts[2], "bad signature"},
		{"wrong secret", handToken([]byte("another secret of the same sort.."), hs256, payloadExp("")), "bad signature"},

		{"expired", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"d","exp":%d}`, exp-10)), "token expired"},
		{"expired at exactly the leeway", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"d","exp":%d}`, exp-5)), "token expired"},
		{"exp zero", handToken(testSecret, hs256, `{"sub":"d","exp":0}`), "token expired"},
		{"exp negative", handToken(testSecret, hs256, `{"sub":"d","exp":-1e12}`), "exp out of range"},
		{"exp huge", handToken(testSecret, hs256, `{"sub":"d","exp":1e300}`), "exp out of range"},
		{"exp missing", handToken(testSecret, hs256, `{"sub":"d"}`), "missing exp"},
		{"exp null", handToken(testSecret, hs256, `{"sub":"d","exp":null}`), "missing exp"},
		{"exp a string", handToken(testSecret, hs256, `{"sub":"d","exp":"1900000000"}`), "exp must be a number"},
		{"nbf in the future", handToken(testSecret, hs256, payloadExp(fmt.Sprintf(`"nbf":%d`, exp+60))), "token not valid yet"},
		{"nbf just past the leeway", handToken(testSecret, hs256, payloadExp(fmt.Sprintf(`"nbf":%d.001`, exp+5))), "token not valid yet"},
		{"nbf a string", handToken(testSecret, hs256, payloadExp(`"nbf":"soon"`)), "nbf must be a number"},
		{"nbf huge", handToken(testSecret, hs256, payloadExp(`"nbf":1e20`)), "nbf out of range"},

		{"sub missing", handToken(testSecret, hs256, fmt.Sprintf(`{"exp":%d}`, exp+60)), "missing sub"},
		{"sub empty", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"","exp":%d}`, exp+60)), "missing sub"},
		{"sub null", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":null,"exp":%d}`, exp+60)), "missing sub"},
		{"sub too long", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"%s","exp":%d}`, strings.Repeat("d", MaxDeviceLen+1), exp+60)), "sub too long"},
		{"sub a number", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":42,"exp":%d}`, exp+60)), "sub must be a string"},
		{"sub a list", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":["d"],"exp":%d}`, exp+60)), "sub must be a string"},
		{"sub with a newline", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"d\r\nX-Evil: 1","exp":%d}`, exp+60)), "invalid sub (control character)"},
		{"sub with DEL", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"d\u007f","exp":%d}`, exp+60)), "invalid sub (control character)"},
		{"sub with C1 NEL", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"d\u0085","exp":%d}`, exp+60)), "invalid sub (control character)"},
		{"sub ..", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"..","exp":%d}`, exp+60)), "invalid sub (reserved name)"},
		{"sub /", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"/","exp":%d}`, exp+60)), "invalid sub (reserved name)"},
		{"sub with C1 CSI", handToken(testSecret, hs256, fmt.Sprintf(`{"sub":"\u009b31m","exp":%d}`, exp+60)), "invalid sub (control character)"},

		{"app a number", handToken(testSecret, hs256, payloadExp(`"app":7`)), "app must be a string"},
		{"app too long", handToken(testSecret, hs256, payloadExp(`"app":"`+strings.Repeat("a", MaxAppLen+1)+`"`)), "app too long"},
		{"app with DEL", handToken(testSecret, hs256, payloadExp(`"app":"a\u007f"`)), "app has control characters"},

		{"groups a string", handToken(testSecret, hs256, payloadExp(`"groups":"room"`)), "groups must be a list of strings"},
		{"groups an object", handToken(testSecret, hs256, payloadExp(`"groups":{"room":true}`)), "groups must be a list of strings"},
		{"groups with a number", handToken(testSecret, hs256, payloadExp(`"groups":["a",1]`)), "groups must be a list of strings"},
		{"groups with null", handToken(testSecret, hs256, payloadExp(`"groups":[null]`)), "groups must be a list of strings"},
		{"too many groups", handToken(testSecret, hs256, payloadExp(`"groups":[`+groupList(MaxGroups+1, 1)+`]`)), "too many groups"},
		{"empty group name", handToken(testSecret, hs256, payloadExp(`"groups":["a",""]`)), "empty group name"},
		{"group name too long", handToken(testSecret, hs256, payloadExp(`"groups":["`+strings.Repeat("g", MaxGroupLen+1)+`"]`)), "group name too long"},
		{"group name with a tab", handToken(testSecret, hs256, payloadExp(`"groups":["a\tb"]`)), "group name has control characters"},
	}
	v := NewVerifier(testSecret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify([]byte(tt.token), testNow)
			if err == nil {
				t.Fatalf("Verify accepted %q: %+v", tt.token, c)
			}
			if err.Error() != tt.want {
				t.Errorf("reason = %q, want %q", err, tt.want)
			}
			if c.Device != "" || c.Groups != nil || !c.Expires.IsZero() {
				t.Errorf("claims not empty on error: %+v", c)
			}
		})
	}
}

// groupList returns n quoted group names of size bytes each, comma separated.
func groupList(n, size int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = `"` + strings.Repeat(string(rune('a'+i%26)), size) + `"`
	}
	return strings.Join(names, ",")
}

// TestVerifyLimits checks that each limit is inclusive: the largest legal
// value passes, the same token one step over fails.
func TestVerifyLimits(t *testing.T) {
	v := NewVerifier(testSecret)
	accept := map[string]string{
		"sub at MaxDeviceLen":    fmt.Sprintf(`{"sub":"%s","exp":%d}`, strings.Repeat("d", MaxDeviceLen), testNow.Unix()+60),
		"app at MaxAppLen":       payloadExp(`"app":"` + strings.Repeat("a", MaxAppLen) + `"`),
		"MaxGroups groups":       payloadExp(`"groups":[` + groupList(MaxGroups, 1) + `]`),
		"group at MaxGroupLen":   payloadExp(`"groups":[` + groupList(1, MaxGroupLen) + `]`),
		"empty groups":           payloadExp(`"groups":[]`),
		"expired within leeway":  fmt.Sprintf(`{"sub":"d","exp":%d}`, testNow.Unix()-4),
		"nbf within leeway":      payloadExp(fmt.Sprintf(`"nbf":%d`, testNow.Unix()+5)),
		"nbf past":               payloadExp(fmt.Sprintf(`"nbf":%d`, testNow.Unix()-3600)),
		"unicode sub":            fmt.Sprintf(`{"sub":"设备-é","exp":%d}`, testNow.Unix()+60),
		"sub with / % and space": fmt.Sprintf(`{"sub":"a/b ü%%","exp":%d}`, testNow.Unix()+60),
	}
	for name, payload := range accept {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Verify([]byte(handToken(testSecret, hs256, payload)), testNow); err != nil {
				t.Errorf("Verify(%s): %v", payload, err)
			}
		})
	}
}

// TestVerifyTokenLength checks MaxTokenLen at its edge: the longest valid
// token that fits is accepted, one that does not is refused unparsed.
func TestVerifyTokenLength(t *testing.T) {
	v := NewVerifier(testSecret)
	var fits, over string
	for pad := 2000; over == ""; pad++ {
		tok := handToken(testSecret, hs256, payloadExp(`"pad":"`+strings.Repeat("x", pad)+`"`))
		if len(tok) <= MaxTokenLen {
			fits = tok
		} else {
			over = tok
		}
	}
	if fits == "" || len(fits) < MaxTokenLen-2 {
		t.Fatalf("no token just under the limit (len %d)", len(fits))
	}
	if _, err := v.Verify([]byte(fits), testNow); err != nil {
		t.Errorf("token of %d bytes: %v", len(fits), err)
	}
	if _, err := v.Verify([]byte(over), testNow); err == nil || err.Error() != "token too long" {
		t.Errorf("token of %d bytes: err = %v, want token too long", len(over), err)
	}
}

func TestVerifierSecret(t *testing.T) {
	secret := []byte("a secret that the caller reuses!")
	tok := handToken(secret, hs256, payloadExp(""))
	v := NewVerifier(secret)
	copy(secret, "overwritten by the caller's code")
	if _, err := v.Verify([]byte(tok), testNow); err != nil {
		t.Errorf("Verify after the caller reused its secret slice: %v", err)
	}

	empty := NewVerifier(nil)
	_, err := empty.Verify([]byte(handToken(nil, hs256, payloadExp(""))), testNow)
	if err == nil || err.Error() != "no token secret configured" {
		t.Errorf("empty secret: err = %v, want refusal", err)
	}
}

func TestMintRefuses(t *testing.T) {
	exp := testNow.Add(time.Hour)
	tests := []struct {
		name   string
		secret []byte
		claims Claims
		want   string
	}{
		{"empty secret", nil, Claims{Device: "d", Expires: exp}, "auth: mint: empty secret"},
		{"no device", testSecret, Claims{Expires: exp}, "auth: mint: missing sub"},
		{"long device", testSecret, Claims{Device: strings.Repeat("d", MaxDeviceLen+1), Expires: exp}, "auth: mint: sub too long"},
		{"no expiry", testSecret, Claims{Device: "d"}, "auth: mint: missing exp"},
		{"expiry out of range", testSecret, Claims{Device: "d", Expires: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "auth: mint: exp out of range"},
		{"too many groups", testSecret, Claims{Device: "d", Expires: exp, Groups: make([]string, MaxGroups+1)}, "auth: mint: too many groups"},
		{"empty group", testSecret, Claims{Device: "d", Expires: exp, Groups: []string{"a", ""}}, "auth: mint: empty group name"},
		{"C1 in device", testSecret, Claims{Device: "a\u0085", Expires: exp}, "auth: mint: invalid sub (control character)"},
		{"device not UTF-8", testSecret, Claims{Device: "a\xffb", Expires: exp}, "auth: mint: invalid sub (not UTF-8)"},
		{"control in app", testSecret, Claims{Device: "d", Expires: exp, App: "a\nb"}, "auth: mint: app has control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Mint(tt.secret, tt.claims)
			if err == nil {
				t.Fatalf("Mint succeeded: %s", tok)
			}
			if err.Error() != tt.want {
				t.Errorf("err = %q, want %q", err, tt.want)
			}
		})
	}
}

// TestVerifyConcurrent runs one Verifier from several goroutines; under
// -race it shows that Verify does not write shared state.
func TestVerifyConcurrent(t *testing.T) {
	v := NewVerifier(testSecret)
	good := []byte(handToken(testSecret, hs256, payloadExp("")))
	bad := []byte(handToken(testSecret, `{"alg":"HS384"}`, payloadExp("")))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if _, err := v.Verify(good, testNow); err != nil {
					errs <- err
					return
				}
				if _, err := v.Verify(bad, testNow); err == nil {
					errs <- fmt.Errorf("HS384 token accepted")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkVerify(b *testing.B) {
	tok, err := Mint(testSecret, Claims{Device: "device-1234567890", App: "chat",
		Groups: []string{"room:1"}, Expires: testNow.Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	v := NewVerifier(testSecret)
	token := []byte(tok)
	b.SetBytes(int64(len(token)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(token, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMint(b *testing.B) {
	c := Claims{Device: "device-1234567890", App: "chat", Groups: []string{"room:1"}, Expires: testNow.Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Mint(testSecret, c); err != nil {
			b.Fatal(err)
		}
	}
}
