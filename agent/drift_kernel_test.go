package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxmesh/vxmesh/internal/nstest"
)

const driftConfig = `
networks:
  - name: web
    subnet: 10.61.0.0/24
containers:
  - name: c1
    netns: ns(1)
    networks: [web]
    publish: ["8080:80", "8443:443"]
`

// driftRepairLimit is issue 13's target: every kind of drift repaired
// within 2 s (the periodic resync is 30 s, so only the watches meet it).
const driftRepairLimit = 2 * time.Second

// TestDriftRepaired breaks, one kind at a time, what the agent made (rules
// by iptables the way an admin or a firewall reload does, name files,
// links) and measures how long until it is back.
func TestDriftRepaired(t *testing.T) {
	e := newEnv(t)
	e.writeConfig(driftConfig)
	r := e.start(false)
	r.waitOK(t)
	h := e.host
	ipt := func(args ...string) string {
		out, _ := h.Run(append([]string{"iptables"}, args...)...)
		return out
	}
	has := func(out, want string) error {
		if !strings.Contains(out, want) {
			return fmt.Errorf("no %q in:\n%s", want, out)
		}
		return nil
	}
	file := func(name string) string { return filepath.Join(e.etc, e.NS(1), name) }
	original := map[string][]byte{}
	for _, f := range []string{"resolv.conf", "hosts"} {
		b, err := os.ReadFile(file(f))
		if err != nil {
			t.Fatal(err)
		}
		original[f] = b
	}
	sameFile := func(name string) error {
		b, _ := os.ReadFile(file(name))
		if string(b) != string(original[name]) {
			return fmt.Errorf("%s is %q", name, b)
		}
		return nil
	}
	hostIf := func() string {
		out := h.MustRun(t, "ip", "-o", "link", "show", "master", "br-web")
		f := strings.Fields(out)
		if len(f) < 2 {
			t.Fatalf("no port on br-web: %q", out)
		}
		return strings.TrimSuffix(strings.Split(f[1], "@")[0], ":")
	}
	for _, c := range []struct {
		name  string
		limit time.Duration
		do    func()
		back  func() error
	}{
		{"flush VXMESH-POSTROUTING", driftRepairLimit,
			func() { ipt("-t", "nat", "-F", "VXMESH-POSTROUTING") },
			func() error { return has(ipt("-t", "nat", "-S", "VXMESH-POSTROUTING"), "-j MASQUERADE") }},
		{"delete POSTROUTING jump", driftRepairLimit,
			func() { ipt("-t", "nat", "-D", "POSTROUTING", "-j", "VXMESH-POSTROUTING") },
			func() error { return has(ipt("-t", "nat", "-S", "POSTROUTING"), "-j VXMESH-POSTROUTING") }},
		{"iptables -F (filter)", driftRepairLimit,
			func() { ipt("-F") },
			func() error {
				if err := has(ipt("-S", "FORWARD"), "-j VXMESH-FORWARD"); err != nil {
					return err
				}
				return has(ipt("-S", "VXMESH-FORWARD"), "-o br-web")
			}},
		{"delete a DNAT rule", driftRepairLimit,
			func() {
				for _, l := range strings.Split(ipt("-t", "nat", "-S", "VXMESH-DNAT"), "\n") {
					if strings.Contains(l, "--dport 8443") {
						ipt(append([]string{"-t", "nat", "-D"}, strings.Fields(l)[1:]...)...)
					}
				}
			},
			func() error { return has(ipt("-t", "nat", "-S", "VXMESH-DNAT"), "--dport 8443") }},
		{"overwrite resolv.conf", driftRepairLimit,
			func() { os.WriteFile(file("resolv.conf"), []byte("nameserver 9.9.9.9\n"), 0o644) },
			func() error { return sameFile("resolv.conf") }},
		{"overwrite hosts", driftRepairLimit,
			func() { os.WriteFile(file("hosts"), []byte("127.0.0.1 localhost\n"), 0o644) },
			func() error { return sameFile("hosts") }},
		{"delete resolv.conf", driftRepairLimit,
			func() { os.Remove(file("resolv.conf")) },
			func() error { return sameFile("resolv.conf") }},
		{"delete container veth", time.Second,
			func() { h.MustRun(t, "ip", "link", "del", hostIf()) },
			func() error {
				_, err := nstest.RunIn(e.NS(1), "ip", "link", "show", "eth0")
				return err
			}},
		{"delete bridge", time.Second,
			func() { h.MustRun(t, "ip", "link", "del", "br-web") },
			func() error {
				out, _ := h.Run("ip", "-o", "link", "show", "master", "br-web")
				return has(out, "vh")
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.sync(t) // settled: nothing pending
			c.do()
			took, err := pollUntil(10*time.Second, c.back)
			if err != nil {
				t.Fatalf("not repaired after %v: %v", took, err)
			}
			t.Logf("drift %q repaired in %v", c.name, took.Round(time.Millisecond))
			if took > c.limit {
				t.Errorf("repair took %v, want < %v", took, c.limit)
			}
		})
	}
	// The repairs settle: a pass now writes nothing.
	r.sync(t)
	w := r.writes()
	r.sync(t)
	if got := r.writes(); got != w {
		t.Errorf("a pass after the repairs wrote %d times", got-w)
	}
}

// pollUntil calls cond every 10 ms until it returns nil or timeout passes;
// it returns how long that took.
func pollUntil(timeout time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := cond()
		if err == nil || time.Since(start) > timeout {
			return time.Since(start), err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
