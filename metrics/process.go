package metrics

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// The kernel fixes it at 100 in its user-space ABI on every architecture
// Longlink runs on, whatever the kernel's internal HZ, so it is a constant
// here rather than a sysconf(_SC_CLK_TCK) call that would need cgo.
const clockTicks = 100

// ReadProcess returns the resident set size of this process in bytes and
// the user+system CPU time it has used, in seconds, read from
// /proc/self/statm and /proc/self/stat. Either value is zero when it cannot
// be read (no /proc: not Linux, or a sandbox without it); the caller fills
// a Snapshot with it and a zero is the honest "unknown" there.
func ReadProcess() (rss int64, cpuSeconds float64) {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if pages, err := parseStatm(b); err == nil {
			rss = pages * int64(os.Getpagesize())
		}
	}
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		if ticks, err := parseStat(b); err == nil {
			cpuSeconds = float64(ticks) / clockTicks
		}
	}
	return rss, cpuSeconds
}

// parseStatm returns the resident pages, the second field of
// /proc/<pid>/statm ("size resident shared text lib data dt").
func parseStatm(b []byte) (int64, error) {
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return 0, fmt.Errorf("statm: %d fields, want at least 2", len(fields))
	}
	pages, err := strconv.ParseInt(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("statm resident: %w", err)
	}
	return pages, nil
}

// parseStat returns utime+stime, in clock ticks, from /proc/<pid>/stat.
// The second field, the command name, is in parentheses and may itself
// contain spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (int64, error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("stat: no ')' after the command name")
	}
	// After ") " come field 3 (state) onwards; utime and stime are fields
	// 14 and 15, so indexes 11 and 12 here.
	fields := bytes.Fields(b[end+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(fields))
	}
	utime, err := strconv.ParseInt(string(fields[11]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat utime: %w", err)
	}
	stime, err := strconv.ParseInt(string(fields[12]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stat stime: %w", err)
	}
	return utime + stime, nil
}
