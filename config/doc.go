// Package config is Longlink's one Config struct: every setting of a node,
// where it comes from, its default and its limits. main.go stays tiny:
//
//	cfg, err := config.Parse(os.Args[1:], os.Getenv)
//	if errors.Is(err, flag.ErrHelp) {
//		return // usage was printed
//	}
//	if err != nil {
//		log.Fatal(err)
//	}
//
// # Sources
//
// Each field is bound to one command-line flag and to the environment
// variable LONGLINK_<FLAG>, the flag name upper-cased with '-' turned into
// '_' (-ws-listen is LONGLINK_WS_LISTEN). A flag beats its variable, which
// beats the default. The defaults are named constants, applied in one
// place, Default. An empty variable counts as unset, so disabling a
// listener takes the flag (-listen=""), not the environment. -h prints
// every flag with its variable and default.
//
// -biz is repeatable, one business each:
//
//	ID=echo                    the built-in echo business, answered on the reading goroutine
//	ID=URL[,OPTIONS]           a backend reached by HTTP POST (http or https)
//	OPTIONS: timeout=D (Go duration), workers=N, queue=N; each at most once, positive
//
// ID is 1..65535. Giving -biz at all replaces the default list (1=echo);
// LONGLINK_BIZ holds several specs separated by ';', and a -biz on the
// command line replaces that list too. A URL may not contain ',' (write
// %2C).
//
// # Validation
//
// Parse ends with Validate, so a Config from Parse is ready to use; a
// Config built in code should be checked with Validate. Validate reports
// every problem at once, each naming its flag. Besides ranges it enforces
// the embedded default's safety rule: while the API key or the JWT secret
// is a development default (DevSecrets), or the JWT secret is shorter than
// MinJWTSecretLen (32) or the API key shorter than MinAPIKeyLen (16) bytes,
// every listener must be a loopback address (127.0.0.0/8, ::1 or
// localhost); an empty host, 0.0.0.0, ::, any other address or host name is
// refused, so a node cannot be reached from the network with secrets that
// anyone can read in this file.
//
// A Config is a plain value: copy it freely; nothing here is shared or
// locked.
package config
