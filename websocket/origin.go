package websocket

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ErrOrigin answers a handshake whose Origin is not allowed (Origins).
var ErrOrigin = &Error{Status: 403, Reason: "origin not allowed"}

// Origins is the list of Origin header values an opening handshake may
// carry. A browser sends the origin of the page that opens a WebSocket,
// and WebSocket has no same-origin policy, so this list is what stops a
// page on another site from connecting with the user's cookies or
// network position. The zero value allows every origin.
type Origins struct {
	list []string // ASCII lower-case serialised origins, as ParseOrigin returns them
}

// ParseOrigins returns the Origins of list, each entry an origin
// scheme://host[:port] (ParseOrigin). An empty list allows every origin.
func ParseOrigins(list []string) (Origins, error) {
	var o Origins
	for _, s := range list {
		canon, err := ParseOrigin(s)
		if err != nil {
			return Origins{}, fmt.Errorf("websocket: origin %q: %w", s, err)
		}
		o.list = append(o.list, canon)
	}
	return o, nil
}

// ParseOrigin checks that s is an origin as a browser serialises it in
// the Origin header (RFC 6454 section 6.2): scheme://host[:port], with no
// path (not even "/"), query, fragment or user info, and an ASCII host
// (punycode for an international name). It returns s in ASCII lower
// case, the form Allow compares. "null", the origin of sandboxed and
// file pages, is refused: every such page shares it.
func ParseOrigin(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return "", errors.New("want an ASCII origin without spaces (punycode for an international host name)")
		}
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("parsing the origin: %w", err)
	case u.Scheme == "" || u.Opaque != "" || u.Host == "" || !strings.Contains(s, "://"):
		return "", errors.New("want scheme://host[:port]")
	case u.User != nil:
		return "", errors.New("want scheme://host[:port], without user info")
	case u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "", errors.New("want scheme://host[:port], without a path (not even a trailing /), query or fragment")
	case u.Hostname() == "":
		return "", errors.New("want scheme://host[:port], with a host")
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return "", fmt.Errorf("port %q: want 1..65535", port)
		}
	}
	return lowerASCII(s), nil
}

// Allow reports whether a handshake whose Origin header is origin may
// proceed. It always may when the list is empty, and when origin is
// empty (Handshake.Origin is nil without the header): browsers send the
// header on every WebSocket handshake, and a native client, which need
// not, could send any value anyway. Otherwise origin must equal an entry
// once its ASCII upper-case letters are lowered (scheme and host are
// case-insensitive). It does not allocate.
func (o Origins) Allow(origin []byte) bool {
	if len(o.list) == 0 || len(origin) == 0 {
		return true
	}
	for _, allowed := range o.list {
		if equalLowered(origin, allowed) {
			return true
		}
	}
	return false
}

// List returns the allowed origins in their compared (lower-case) form;
// empty when every origin is allowed.
func (o Origins) List() []string { return append([]string(nil), o.list...) }

// equalLowered reports whether b, with ASCII upper-case letters lowered,
// is lower. Only ASCII letters fold: bytes.EqualFold would also match
// non-ASCII look-alikes such as the Kelvin sign for 'k'.
func equalLowered(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
