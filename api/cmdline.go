package api

import (
	"io"
	"net/http"
	"os"
	"strings"
)

// secretFlags are the gateway's flags whose values are secrets (package
// config): /debug/pprof/cmdline never prints their values.
var secretFlags = map[string]bool{
	"api-key":        true,
	"jwt-secret":     true,
	"redis-password": true,
}

// redacted replaces the value of a secret flag.
const redacted = "[redacted]"

// cmdline answers like net/http/pprof's Cmdline (the arguments separated
// by NUL bytes) with the values of secret flags redacted.
func cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// A write error means the client is gone; there is nobody to tell.
	_, _ = io.WriteString(w, strings.Join(redactArgs(os.Args), "\x00"))
}

// redactArgs returns a copy of args (a command line, program name first)
// with the value of every secret flag replaced by "[redacted]", in each
// form package flag reads: -f v, -f=v, --f v and --f=v. A secret flag
// without "=" takes the next argument as its value whatever it looks like,
// as package flag does for a string flag, so that argument is redacted
// whole. Every argument is also looked at as a flag itself, even one that
// is a value or comes after "--", where package flag would not: redacting
// too much is harmless, printing a secret is not.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	copy(out, args)
	for i := 1; i < len(args); i++ {
		name, hasValue := secretFlag(args[i])
		switch {
		case name == "":
		case hasValue:
			if out[i] != redacted { // not already the whole value of the flag before
				out[i] = args[i][:strings.IndexByte(args[i], '=')+1] + redacted
			}
		case i+1 < len(args):
			out[i+1] = redacted
		}
	}
	return out
}

// secretFlag reports whether arg is a secret flag (-f, --f, -f=v or
// --f=v), returning its name and whether its value is in arg itself.
func secretFlag(arg string) (name string, hasValue bool) {
	rest, ok := strings.CutPrefix(arg, "-")
	if !ok {
		return "", false
	}
	rest = strings.TrimPrefix(rest, "-") // package flag takes -f and --f alike
	name, _, hasValue = strings.Cut(rest, "=")
	if !secretFlags[name] {
		return "", false
	}
	return name, hasValue
}
