package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

func TestValidDevice(t *testing.T) {
	tests := []struct {
		id   string
		want string // Error(), "" when valid
	}{
		{"d", ""},
		{"phone-1", ""},
		{"a/b ü%", ""},
		{"设备-é", ""},
		{"...", ""},
		{"./", ""},
		{"a/", ""},
		{"//", ""},
		{"a\u00a0b", ""}, // NO-BREAK SPACE, the first code point after C1
		{"\u2028", ""},   // LINE SEPARATOR is a format character, not a control one
		{"\ufffd", ""},
		{strings.Repeat("d", MaxDeviceLen), ""},
		{strings.Repeat("é", MaxDeviceLen/2), ""},

		{"", "device id is empty"},
		{strings.Repeat("d", MaxDeviceLen+1), "device id is 129 bytes, over the limit of 128"},
		{strings.Repeat("é", MaxDeviceLen/2) + "d", "device id is 129 bytes, over the limit of 128"},
		{"a\x00b", `device id "a\x00b" contains the control character U+0000`},
		{"a\nb", `device id "a\nb" contains the control character U+000A`},
		{"a\x1f", `device id "a\x1f" contains the control character U+001F`},
		{"a\x7f", `device id "a\x7f" contains the control character U+007F`},
		{"a\u0080", `device id "a\u0080" contains the control character U+0080`},
		{"a\u0085", `device id "a\u0085" contains the control character U+0085`},
		{"\u009f", `device id "\u009f" contains the control character U+009F`},
		{"a\xffb", `device id "a\xffb" is not valid UTF-8`},
		{"a\x85", `device id "a\x85" is not valid UTF-8`},               // a lone C1 byte is not U+0085
		{"\xed\xa0\x80", `device id "\xed\xa0\x80" is not valid UTF-8`}, // a surrogate
		{"\xc0\xaf", `device id "\xc0\xaf" is not valid UTF-8`},         // overlong '/'
		{".", `device id "." is not allowed: ".", ".." and "/" cannot be named in a URL path`},
		{"..", `device id ".." is not allowed: ".", ".." and "/" cannot be named in a URL path`},
		{"/", `device id "/" is not allowed: ".", ".." and "/" cannot be named in a URL path`},
	}
	for _, tt := range tests {
		err := ValidDevice(tt.id)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidDevice(%q) = %v, want nil", tt.id, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("ValidDevice(%q) = %v, want %q", tt.id, err, tt.want)
		case tt.want != "":
			var de *DeviceError
			if !errors.As(err, &de) || de.ID != tt.id {
				t.Errorf("ValidDevice(%q): %#v is not a *DeviceError carrying the id", tt.id, err)
			}
		}
	}
}

func TestDeviceErrorDescribe(t *testing.T) {
	for id, want := range map[string]string{
		"":                                   "devices[2] is empty",
		strings.Repeat("d", MaxDeviceLen+50): "devices[2] is 178 bytes, over the limit of 128",
		"a\u0085":                            `devices[2] "a\u0085" contains the control character U+0085`,
	} {
		err := ValidDevice(id).(*DeviceError)
		if got := err.Describe("devices[2]"); got != want {
			t.Errorf("Describe(%q) = %q, want %q", id, got, want)
		}
	}
}

// FuzzValidDevice checks ValidDevice against the rule written out with
// the standard library (unicode.IsControl is exactly C0, DEL and C1),
// and that login agrees with it: a sub is accepted by Verify exactly
// when ValidDevice accepts it, and comes back unchanged.
func FuzzValidDevice(f *testing.F) {
	for _, s := range []string{"d", "", "a/b ü%", "a\u0085", "a\x85", "\x7f", "\u00a0", "\xed\xa0\x80", "..", "/", strings.Repeat("é", 64)} {
		f.Add(s)
	}
	v := NewVerifier(testSecret)
	exp := testNow.Add(time.Hour)
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidDevice(s)
		want := s != "" && len(s) <= MaxDeviceLen && utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) &&
			s != "." && s != ".." && s != "/"
		if (err == nil) != want {
			t.Fatalf("ValidDevice(%q) = %v, want valid=%v", s, err, want)
		}
		if err != nil {
			var de *DeviceError
			if !errors.As(err, &de) || de.ID != s || de.Problem() == "" {
				t.Fatalf("ValidDevice(%q) = %#v", s, err)
			}
		}
		// JSON cannot carry invalid UTF-8 (decoders replace it), so the
		// login side is checked for valid strings only.
		if !utf8.ValidString(s) {
			return
		}
		tok, merr := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": s, "exp": exp.Unix()}).SignedString(testSecret)
		if merr != nil {
			t.Fatal(merr)
		}
		c, verr := v.Verify([]byte(tok), testNow)
		switch {
		case err == nil && (verr != nil || c.Device != s):
			t.Fatalf("valid id %q: Verify = %q, %v", s, c.Device, verr)
		case err != nil && verr == nil:
			t.Fatalf("invalid id %q (%v) logged in", s, err)
		}
		if _, merr := Mint(testSecret, Claims{Device: s, Expires: exp}); (merr == nil) != (err == nil) {
			t.Fatalf("Mint(%q) = %v, ValidDevice = %v", s, merr, err)
		}
	})
}
