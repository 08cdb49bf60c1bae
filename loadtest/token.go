package main

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenClaims are the claims of a LOGIN token (docs/protocol.md, LOGIN): sub is
// the device id, app the application, groups the groups to join at login.
type tokenClaims struct {
	App    string   `json:"app,omitempty"`
	Groups []string `json:"groups,omitempty"`
	jwt.RegisteredClaims
}

// mintToken signs an HS256 login token the way a business backend would.
func mintToken(secret []byte, device, app string, groups []string, ttl time.Duration, now time.Time) (string, error) {
	if len(device) == 0 || len(device) > 128 {
		return "", errors.New("device id must be 1..128 bytes")
	}
	c := tokenClaims{
		App:    app,
		Groups: groups,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   device,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
