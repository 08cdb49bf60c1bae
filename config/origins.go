package config

import (
	"strings"

	"github.com/longlink/longlink/websocket"
)

// originList is the -ws-origins flag: a comma-separated list that
// replaces the whole list each time it is set (a flag on the command
// line replaces the environment's list, as for every other flag).
type originList struct{ list *[]string }

func (o originList) String() string {
	if o.list == nil {
		return ""
	}
	return strings.Join(*o.list, ",")
}

// Set splits s at commas and trims spaces around each entry. Entries are
// checked by Validate, so that every bad one is reported at once. An
// empty or blank s empties the list.
func (o originList) Set(s string) error {
	*o.list = nil
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for _, e := range strings.Split(s, ",") {
		*o.list = append(*o.list, strings.TrimSpace(e))
	}
	return nil
}

// validateOrigins reports each entry of -ws-origins that is not an
// origin scheme://host[:port].
func validateOrigins(list []string, bad func(format string, args ...any)) {
	for _, o := range list {
		if _, err := websocket.ParseOrigin(o); err != nil {
			bad("-ws-origins %q: %v", o, err)
		}
	}
}
