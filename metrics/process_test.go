package metrics

import (
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"testing"
	"time"
)

func TestReadProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ReadProcess reads /proc, which only Linux has")
	}
	rss, _ := ReadProcess()
	if rss < 1<<20 || rss > 1<<40 {
		t.Fatalf("rss = %d bytes, not plausible for a Go test binary", rss)
	}

	// Burn CPU in user and in system mode, then compare with getrusage,
	// which measures the same thing through another door. /proc counts
	// whole ticks of 10ms for user and for system time, hence the
	// tolerance.
	start := rusage(t)
	for deadline := time.Now().Add(5 * time.Second); ; {
		ru := rusage(t)
		if seconds(ru.Utime)-seconds(start.Utime) >= 0.05 && seconds(ru.Stime)-seconds(start.Stime) >= 0.05 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("could not burn 50ms of user and of system time in 5s: %+v", ru)
		}
		for i := 0; i < 1e5; i++ {
			sink += i * i
		}
		for i := 0; i < 1e3; i++ {
			sink += syscall.Getppid()
		}
	}
	_, cpu := ReadProcess()
	ru := rusage(t)
	want := seconds(ru.Utime) + seconds(ru.Stime)
	if cpu <= 0 || cpu > want || cpu < want-0.03 {
		t.Fatalf("cpu = %vs, getrusage says %vs", cpu, want)
	}
}

// sink keeps the CPU-burning loop from being optimised away.
var sink int

func rusage(t *testing.T) syscall.Rusage {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru
}

func seconds(tv syscall.Timeval) float64 { return time.Duration(tv.Nano()).Seconds() }

func TestReadProcessRSSGrows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ReadProcess reads /proc, which only Linux has")
	}
	// Hand memory freed by earlier tests back to the kernel, or the
	// allocation below may reuse pages that are already resident.
	debug.FreeOSMemory()
	before, _ := ReadProcess()
	buf := make([]byte, 64<<20)
	for i := 0; i < len(buf); i += os.Getpagesize() {
		buf[i] = 1 // fresh pages are not resident until written
	}
	after, _ := ReadProcess()
	runtime.KeepAlive(buf)
	if grown := after - before; grown < 48<<20 {
		t.Fatalf("rss grew by %d bytes after touching 64 MiB (before %d, after %d)", grown, before, after)
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses, as a process may choose.
	stat := "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 8 0 100 1000000 500 " +
		"18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	ticks, err := parseStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if ticks != 325 {
		t.Fatalf("ticks = %d, want utime 250 + stime 75", ticks)
	}
	for _, bad := range []string{"", "4242 no-paren S 1", "4242 (x) S 1 2 3", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 u 1", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 1 s"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestParseStatm(t *testing.T) {
	pages, err := parseStatm([]byte("12345 678 90 1 0 2000 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pages != 678 {
		t.Fatalf("pages = %d, want 678", pages)
	}
	for _, bad := range []string{"", "12345", "12345 x"} {
		if _, err := parseStatm([]byte(bad)); err == nil {
			t.Errorf("parseStatm(%q) succeeded", bad)
		}
	}
}
