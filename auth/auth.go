package auth

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Limits on tokens and their claims.
const (
	MaxTokenLen  = 4096            // bytes; longer tokens are refused before parsing
	MaxDeviceLen = 128             // bytes of "sub"
	MaxAppLen    = 128             // bytes of "app"
	MaxGroups    = 64              // entries in "groups"
	MaxGroupLen  = 128             // bytes of one group name
	Leeway       = 5 * time.Second // clock skew allowed on exp and nbf
)

// maxUnix bounds exp and nbf (the end of year 9999) so that converting a
// float to time.Time cannot overflow.
const maxUnix = 253402300799

// Claims are what a login token says about a device.
type Claims struct {
	Device  string    // "sub", required, a device id that ValidDevice accepts
	App     string    // "app", optional
	Groups  []string  // "groups", optional list of group names to join at login
	Expires time.Time // "exp", required
}

// The reasons Verify gives. Their text is sent to clients.
var (
	errEmpty      = errors.New("missing token")
	errTooLong    = errors.New("token too long")
	errNoSecret   = errors.New("no token secret configured")
	errMalformed  = errors.New("malformed token")
	errAlg        = errors.New("alg must be HS256")
	errCrit       = errors.New("unsupported crit header")
	errSignature  = errors.New("bad signature")
	errInvalid    = errors.New("invalid token")
	errExpired    = errors.New("token expired")
	errNotYet     = errors.New("token not valid yet")
	errNoExp      = errors.New("missing exp")
	errExpType    = errors.New("exp must be a number")
	errExpRange   = errors.New("exp out of range")
	errNbfType    = errors.New("nbf must be a number")
	errNbfRange   = errors.New("nbf out of range")
	errNoSub      = errors.New("missing sub")
	errSubType    = errors.New("sub must be a string")
	errSubLong    = errors.New("sub too long")
	errSubUTF8    = errors.New("invalid sub (not UTF-8)")
	errSubCtl     = errors.New("invalid sub (control character)")
	errSubPath    = errors.New("invalid sub (reserved name)")
	errAppType    = errors.New("app must be a string")
	errAppLong    = errors.New("app too long")
	errAppCtl     = errors.New("app has control characters")
	errGroupsType = errors.New("groups must be a list of strings")
	errGroupsMany = errors.New("too many groups")
	errGroupEmpty = errors.New("empty group name")
	errGroupLong  = errors.New("group name too long")
	errGroupCtl   = errors.New("group name has control characters")
)

// errMintNoSecret is Mint's own: Verify reports errNoSecret instead.
var errMintNoSecret = errors.New("empty secret")

// Verifier checks login tokens against one shared secret.
type Verifier struct {
	secret []byte      // HMAC key; empty means every token is refused
	parser *jwt.Parser // signature and format only; claims are checked here
	key    jwt.Keyfunc // v.keyFor, bound once so Verify does not allocate a closure
}

// NewVerifier returns a Verifier for tokens signed with secret. It keeps
// its own copy of secret. With an empty secret every token is refused.
func NewVerifier(secret []byte) *Verifier {
	v := &Verifier{
		secret: append([]byte(nil), secret...),
		// Claims validation is ours: the library's checks run against the
		// wall clock, while Verify takes now from its caller.
		parser: jwt.NewParser(jwt.WithoutClaimsValidation()),
	}
	v.key = v.keyFor
	return v
}

// keyFor is the jwt.Keyfunc: it sees the decoded header before any
// signature is checked, and hands out the secret only for HS256.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	if t.Method != jwt.SigningMethodHS256 {
		return nil, errAlg
	}
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	return v.secret, nil
}

// Verify checks token and returns its claims. Every failure is an error
// whose message is a short human-readable reason, fit to send to the
// client (see the package documentation for the rules).
func (v *Verifier) Verify(token []byte, now time.Time) (Claims, error) {
	switch {
	case len(token) == 0:
		return Claims{}, errEmpty
	case len(token) > MaxTokenLen:
		return Claims{}, errTooLong
	case len(v.secret) == 0:
		return Claims{}, errNoSecret
	}
	m := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(string(token), m, v.key); err != nil {
		return Claims{}, reason(err)
	}
	c, exp, nbf, err := fromMap(m)
	if err != nil {
		return Claims{}, err
	}
	if err := c.check(); err != nil {
		return Claims{}, err
	}
	if !now.Before(exp.Add(Leeway)) {
		return Claims{}, errExpired
	}
	if !nbf.IsZero() && now.Before(nbf.Add(-Leeway)) {
		return Claims{}, errNotYet
	}
	return c, nil
}

// reason maps the JWT library's error to one of our reasons.
func reason(err error) error {
	switch {
	case errors.Is(err, errAlg):
		return errAlg
	case errors.Is(err, errCrit):
		return errCrit
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// alg missing, not a string, or unknown to the library.
		return errAlg
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return errSignature
	default:
		// Not produced by jwt v5.3 without claims validation; a guard
		// against new library errors reaching the client verbatim.
		return errInvalid
	}
}

// fromMap reads the claims we use out of the decoded payload, checking
// their JSON types. nbf is zero when absent.
func fromMap(m jwt.MapClaims) (c Claims, exp, nbf time.Time, err error) {
	switch sub := m["sub"].(type) {
	case nil:
		return c, exp, nbf, errNoSub
	case string:
		c.Device = sub
	default:
		return c, exp, nbf, errSubType
	}
	switch app := m["app"].(type) {
	case nil:
	case string:
		c.App = app
	default:
		return c, exp, nbf, errAppType
	}
	switch groups := m["groups"].(type) {
	case nil:
	case []any:
		c.Groups = make([]string, len(groups))
		for i, g := range groups {
			s, ok := g.(string)
			if !ok {
				return c, exp, nbf, errGroupsType
			}
			c.Groups[i] = s
		}
	default:
		return c, exp, nbf, errGroupsType
	}
	switch e := m["exp"].(type) {
	case nil:
		return c, exp, nbf, errNoExp
	case float64:
		if !inRange(e) {
			return c, exp, nbf, errExpRange
		}
		exp = unixTime(e)
	default:
		return c, exp, nbf, errExpType
	}
	switch n := m["nbf"].(type) {
	case nil:
	case float64:
		if !inRange(n) {
			return c, exp, nbf, errNbfRange
		}
		nbf = unixTime(n)
	default:
		return c, exp, nbf, errNbfType
	}
	c.Expires = exp
	return c, exp, nbf, nil
}

func inRange(sec float64) bool { return sec >= -maxUnix && sec <= maxUnix }

// unixTime converts a NumericDate (seconds, fractions allowed) to a time.
func unixTime(sec float64) time.Time {
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9))
}

// check enforces the limits on the claims' strings, shared by Verify and
// Mint so that Mint never signs a token Verify would refuse.
func (c *Claims) check() error {
	if err := ValidDevice(c.Device); err != nil {
		return subReason(err.(*DeviceError))
	}
	switch {
	case len(c.App) > MaxAppLen:
		return errAppLong
	case hasControl(c.App):
		return errAppCtl
	case len(c.Groups) > MaxGroups:
		return errGroupsMany
	}
	for _, g := range c.Groups {
		switch {
		case g == "":
			return errGroupEmpty
		case len(g) > MaxGroupLen:
			return errGroupLong
		case hasControl(g):
			return errGroupCtl
		}
	}
	return nil
}

// subReason is the fixed Verify reason for a sub that ValidDevice refused.
func subReason(e *DeviceError) error {
	switch e.kind {
	case deviceEmpty:
		return errNoSub
	case deviceLong:
		return errSubLong
	case deviceUTF8:
		return errSubUTF8
	case devicePath:
		return errSubPath
	default:
		return errSubCtl
	}
}

// deviceProblem is what is wrong with a device id.
type deviceProblem uint8

const (
	deviceEmpty deviceProblem = iota + 1
	deviceLong
	deviceUTF8
	deviceControl
	devicePath
)

// DeviceError is the error ValidDevice returns.
type DeviceError struct {
	ID   string // the refused id, as given
	kind deviceProblem
	ctl  rune // the first control character, for deviceControl
}

// Problem says what is wrong with the id, as a phrase that follows its
// name: "is empty", "contains the control character U+0085", ...
func (e *DeviceError) Problem() string {
	switch e.kind {
	case deviceEmpty:
		return "is empty"
	case deviceLong:
		return fmt.Sprintf("is %d bytes, over the limit of %d", len(e.ID), MaxDeviceLen)
	case deviceUTF8:
		return "is not valid UTF-8"
	case devicePath:
		return "is not allowed: \".\", \"..\" and \"/\" cannot be named in a URL path"
	default:
		return fmt.Sprintf("contains the control character %U", e.ctl)
	}
}

// Describe is the problem after name, with the id quoted in between
// unless it is empty or too long to show: `devices[2] "a\u0085" contains
// the control character U+0085`. The quoting escapes control characters
// and invalid bytes, so the text is safe in logs and JSON answers.
func (e *DeviceError) Describe(name string) string {
	if e.kind == deviceEmpty || e.kind == deviceLong {
		return name + " " + e.Problem()
	}
	return name + " " + strconv.Quote(e.ID) + " " + e.Problem()
}

func (e *DeviceError) Error() string { return e.Describe("device id") }

// ValidDevice reports whether s may be a device id, returning a
// *DeviceError when it may not. It is the one rule for device ids: a
// LOGIN token's sub (Verify), Mint, and every device id the HTTP API
// takes (paths, push and members lists, tokens) are checked with it, so
// a device that can log in can also be pushed to, looked up and kicked.
//
// A device id is 1..MaxDeviceLen bytes of valid UTF-8 without control
// characters: C0 (U+0000..U+001F), DEL (U+007F) or C1 (U+0080..U+009F).
// Ids travel on as HTTP header values, log fields and route keys, where
// a CR, LF or NEL could split a line. The three ids ".", ".." and "/"
// are refused too: no percent-encoding names them in a URL path segment
// (URL parsers remove dot segments, "%2E" included, and Go's mux takes a
// lone "%2F" for a trailing slash). Anything else is allowed, '/', '%',
// '.', spaces and non-ASCII letters included; the API takes ids in paths
// percent-encoded.
func ValidDevice(s string) error {
	switch {
	case s == "":
		return &DeviceError{ID: s, kind: deviceEmpty}
	case len(s) > MaxDeviceLen:
		return &DeviceError{ID: s, kind: deviceLong}
	case s == "." || s == ".." || s == "/":
		return &DeviceError{ID: s, kind: devicePath}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return &DeviceError{ID: s, kind: deviceControl, ctl: rune(c)}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return &DeviceError{ID: s, kind: deviceUTF8}
		case r <= 0x9f: // C1: the only non-ASCII control characters
			return &DeviceError{ID: s, kind: deviceControl, ctl: r}
		}
		i += size
	}
	return nil
}

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// Mint signs claims with secret (HS256), as a business backend or
// POST /v1/tokens does. It refuses claims that Verify would refuse for
// their content (an empty or oversized sub, bad groups, a zero Expires);
// it does not compare Expires with the clock. exp is written in whole
// seconds, so Verify returns Expires truncated to the second.
func Mint(secret []byte, c Claims) (string, error) {
	if len(secret) == 0 {
		return "", fmt.Errorf("auth: mint: %w", errMintNoSecret)
	}
	if err := c.check(); err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	if c.Expires.IsZero() {
		return "", fmt.Errorf("auth: mint: %w", errNoExp)
	}
	exp := c.Expires.Unix()
	if exp < -maxUnix || exp > maxUnix {
		return "", fmt.Errorf("auth: mint: %w", errExpRange)
	}
	payload := jwt.MapClaims{"sub": c.Device, "exp": exp}
	if c.App != "" {
		payload["app"] = c.App
	}
	if len(c.Groups) > 0 {
		payload["groups"] = c.Groups
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, payload).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint: signing: %w", err)
	}
	return s, nil
}
