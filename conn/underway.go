package conn

import "sync"

// underway tracks the devices whose login is under way here: bound in
// the route (a node that looks the device up sends its pushes here) but
// not yet in the registry (Lookup does not find it). A push for such a
// device waits for the login to end (Hub.LoginUnderWay) instead of being
// kept for a resume that has already happened. Only logins with a shared
// route are tracked: without one nothing routes to a login under way.
type underway struct {
	mu sync.Mutex
	m  map[string]*login
}

// login is one device's logins under way: done closes when the last ends.
type login struct {
	n    int
	done chan struct{}
}

func (u *underway) begin(device string) *login {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = make(map[string]*login)
	}
	l := u.m[device]
	if l == nil {
		l = &login{done: make(chan struct{})}
		u.m[device] = l
	}
	l.n++
	return l
}

func (u *underway) end(device string, l *login) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if l.n--; l.n == 0 {
		close(l.done)
		delete(u.m, device)
	}
}

func (u *underway) await(device string) <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if l := u.m[device]; l != nil {
		return l.done
	}
	return nil
}
