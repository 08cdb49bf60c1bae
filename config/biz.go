package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/longlink/longlink/dispatch/upstream"
)

// bizSyntax is quoted in every -biz syntax error.
const bizSyntax = "want ID=echo or ID=URL[,timeout=D][,workers=N][,queue=N]"

// bizList is the -biz flag. Each Set adds one business; the first Set
// after fresh is raised replaces the list, so giving -biz replaces the
// default (or the environment's) instead of adding to it.
type bizList struct {
	list  *[]upstream.Business
	fresh bool // the next Set starts a new list
}

// String formats the list in -biz syntax, one spec per business, joined
// by ';' as in LONGLINK_BIZ.
func (b *bizList) String() string {
	specs := make([]string, len(*b.list))
	for i, biz := range *b.list {
		specs[i] = formatBusiness(biz)
	}
	return strings.Join(specs, ";")
}

func (b *bizList) Set(s string) error {
	biz, err := parseBusiness(s)
	if err != nil {
		return err
	}
	if b.fresh {
		*b.list, b.fresh = nil, false
	}
	*b.list = append(*b.list, biz)
	return nil
}

// setList sets the list from LONGLINK_BIZ: specs separated by ';'.
func (b *bizList) setList(s string) error {
	n := 0
	for spec := range strings.SplitSeq(s, ";") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		if err := b.Set(spec); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no business: " + bizSyntax)
	}
	return nil
}

// parseBusiness reads one -biz spec. It checks the syntax; Validate
// checks the values (URL, unique IDs).
func parseBusiness(s string) (upstream.Business, error) {
	var b upstream.Business
	id, rest, ok := strings.Cut(s, "=")
	if !ok {
		return b, fmt.Errorf("business %q: %s", s, bizSyntax)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(id), 10, 16)
	if err != nil || n == 0 {
		return b, fmt.Errorf("business %q: id %q: want 1..65535", s, id)
	}
	b.ID = uint16(n)
	target, opts, _ := strings.Cut(rest, ",")
	switch target = strings.TrimSpace(target); target {
	case "":
		return b, fmt.Errorf("business %q: missing echo or URL: %s", s, bizSyntax)
	case "echo":
		b.Echo = true
	default:
		b.URL = target
	}
	if opts == "" {
		return b, nil
	}
	for opt := range strings.SplitSeq(opts, ",") {
		if err := setOption(&b, strings.TrimSpace(opt)); err != nil {
			return b, fmt.Errorf("business %q: %w", s, err)
		}
	}
	return b, nil
}

// setOption applies one key=value option of a -biz spec. Every option
// must be positive, so a zero field means "not given yet".
func setOption(b *upstream.Business, opt string) error {
	key, value, ok := strings.Cut(opt, "=")
	if !ok {
		return fmt.Errorf("option %q: want key=value", opt)
	}
	switch key {
	case "timeout":
		if b.Timeout != 0 {
			return errors.New("timeout given twice")
		}
		d, err := time.ParseDuration(value)
		if err != nil || d <= 0 {
			return fmt.Errorf("timeout %q: want a positive duration such as 2s", value)
		}
		b.Timeout = d
	case "workers", "queue":
		field := &b.Workers
		if key == "queue" {
			field = &b.Queue
		}
		if *field != 0 {
			return fmt.Errorf("%s given twice", key)
		}
		n, err := strconv.Atoi(value)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s %q: want a positive integer", key, value)
		}
		*field = n
	default:
		return fmt.Errorf("unknown option %q: want timeout, workers or queue", key)
	}
	return nil
}

// formatBusiness writes b in -biz syntax; parseBusiness reads it back.
func formatBusiness(b upstream.Business) string {
	target := b.URL
	if b.Echo {
		target = "echo"
	}
	s := strconv.Itoa(int(b.ID)) + "=" + target
	if b.Timeout != 0 {
		s += ",timeout=" + b.Timeout.String()
	}
	if b.Workers != 0 {
		s += ",workers=" + strconv.Itoa(b.Workers)
	}
	if b.Queue != 0 {
		s += ",queue=" + strconv.Itoa(b.Queue)
	}
	return s
}

// validateBiz checks the businesses' values: unique ids, echo or an http(s)
// URL, no negative sizes.
func validateBiz(list []upstream.Business) []error {
	var errs []error
	seen := make(map[uint16]bool, len(list))
	for _, b := range list {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("-biz %d: "+format, append([]any{b.ID}, args...)...))
		}
		switch {
		case b.ID == 0:
			bad("id 0 is the gateway itself: want 1..65535")
		case seen[b.ID]:
			bad("id given twice")
		}
		seen[b.ID] = true
		switch {
		case b.Echo && b.URL != "":
			bad("both echo and URL %q", b.URL)
		case b.Echo && (b.Workers != 0 || b.Queue != 0 || b.Timeout != 0):
			bad("echo is answered on the reading goroutine: workers, queue and timeout do not apply")
		case !b.Echo && b.URL == "":
			bad("neither echo nor a URL")
		case b.URL != "":
			if err := checkURL(b.URL); err != nil {
				bad("%q: %v", b.URL, err)
			}
		}
		if b.Workers < 0 || b.Queue < 0 || b.Timeout < 0 {
			bad("workers, queue and timeout must not be negative")
		}
	}
	return errs
}
