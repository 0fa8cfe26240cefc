package config

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exampleSeeds returns every YAML file under ../examples.
func exampleSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	err := filepath.WalkDir("../examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		data, err := os.ReadFile(path)
		seeds = append(seeds, data)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return seeds
}

// FuzzParse feeds arbitrary bytes to the whole pipeline: decode, defaults,
// validation. It must never panic, every error must be well formed, and a
// config it accepts must stay valid when checked again, and each of its
// containers must pass the run-time check against the others.
func FuzzParse(f *testing.F) {
	for _, s := range exampleSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("x: &x {<<: *x}\n"))
	f.Add([]byte("host: {name: h, address: 198.18.0.1}\ncontainers: [{name: a, <<: {mode: 'container:a'}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, errs := parse("fuzz.yaml", data)
		// YAML breaks lines at \n, \r, \r\n, NEL, LS and PS.
		lines := 1
		for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
			lines += bytes.Count(data, []byte(br))
		}
		for _, e := range errs {
			if e.Msg == "" || e.File != "fuzz.yaml" || e.Line < 0 || e.Line > lines || e.Col < 0 {
				t.Errorf("malformed error %#v (file has %d lines)", e, lines)
			}
			if strings.Contains(e.Error(), "\n") && !strings.Contains(string(data), "\n") {
				t.Errorf("error spans lines: %q", e.Error())
			}
		}
		if len(errs) > 0 {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config fails Validate: %v", err)
		}
		for i := range cfg.Containers {
			rest := *cfg
			rest.Containers = append(append([]Container(nil), cfg.Containers[:i]...), cfg.Containers[i+1:]...)
			ct := cfg.Containers[i]
			if err := ValidateContainer(&rest, &ct); err != nil {
				t.Fatalf("container %q of an accepted config fails ValidateContainer: %v", ct.Name, err)
			}
		}
		if l := ValidateCluster([]*Config{cfg}); len(l) != 0 {
			t.Fatalf("a single accepted config fails ValidateCluster: %v", l)
		}
	})
}

// FuzzParsePortSpec checks that every accepted publish spec is well formed
// and survives a round trip through String.
func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{"80", "8080:80", "198.18.0.1::80", "198.18.0.1:8081:80/udp", "8000-8010:8000-8010",
		"[::1]:80:80", "[::1]::80/udp", "0.0.0.0:1-2:3-4/tcp", "1:2:3:4", "80/sctp", "", "[]:1:2", "65535-1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePortSpec(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if p.ContainerPort.Start == 0 || p.ContainerPort.End < p.ContainerPort.Start {
			t.Fatalf("%q: bad container range %+v", s, p.ContainerPort)
		}
		if !p.HostPort.IsZero() && (p.HostPort.End < p.HostPort.Start || p.HostPort.Len() != p.ContainerPort.Len()) {
			t.Fatalf("%q: bad host range %+v", s, p.HostPort)
		}
		if p.Proto != ProtoTCP && p.Proto != ProtoUDP {
			t.Fatalf("%q: proto %q", s, p.Proto)
		}
		q, err := ParsePortSpec(p.String())
		if err != nil || q != p {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, p, p.String(), q, err)
		}
	})
}

// FuzzParseSpecs round-trips the other self-parsing values: expose specs,
// extra hosts, links and join addresses.
func FuzzParseSpecs(f *testing.F) {
	for _, s := range []string{"80", "53/udp", "8000-8010/tcp", "db:10.0.0.1", "v6:[::1]", "v6:::1",
		"198.18.0.2", "198.18.0.2:7946", "[fd00::2]:7946", "fd00::2", "[fe80::1%eth0]:1", "db1", "db1:database"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if e, err := ParseExposeSpec(s); err == nil {
			b, _ := e.MarshalText()
			if e2, err := ParseExposeSpec(string(b)); err != nil || e2 != e {
				t.Fatalf("expose %q -> %q -> %+v, %v", s, b, e2, err)
			}
		}
		if h, err := ParseHostEntry(s); err == nil {
			if h2, err := ParseHostEntry(h.String()); err != nil || h2 != h {
				t.Fatalf("extra host %q -> %q -> %+v, %v", s, h.String(), h2, err)
			}
		}
		if l, err := ParseLinkSpec(s); err == nil {
			if l2, err := ParseLinkSpec(l.String()); err != nil || l2 != l {
				t.Fatalf("link %q -> %q -> %+v, %v", s, l.String(), l2, err)
			}
		}
		if j, err := ParseJoinAddr(s); err == nil {
			if j2, err := ParseJoinAddr(j.String()); err != nil || j2 != j {
				t.Fatalf("join %q -> %q -> %+v, %v", s, j.String(), j2, err)
			}
		}
	})
}
