package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestSpecRoundTrip(t *testing.T) {
	s := ContainerSpec{
		Name: "web1", Netns: "w1", Networks: []string{"web", "db"}, IP: map[string]string{"web": "172.26.5.10"},
		Aliases: []string{"www"}, Hostname: "web1.example.test", DNS: []string{"198.18.5.53"}, DNSSearch: []string{"example.test"},
		DNSOptions: []string{"ndots:2"}, ExtraHosts: []string{"db.example.test:198.18.9.9"},
		Publish: []string{"8080:80/tcp", "198.18.0.1::80/tcp", "198.18.0.1:8081:80/udp"}, PublishAll: true, Expose: []string{"80/tcp", "53/udp"},
	}
	c, err := s.ToConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := SpecFromConfig(c); !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, s)
	}
	for _, bad := range []struct {
		s    ContainerSpec
		want string
	}{
		{ContainerSpec{IP: map[string]string{"web": "x"}}, `ip.web: "x" is not an IP address`},
		{ContainerSpec{DNS: []string{"1.2.3"}}, `dns[0]`},
		{ContainerSpec{ExtraHosts: []string{"nocolon"}}, `extra_hosts[0]`},
		{ContainerSpec{Publish: []string{"1:2:3:4"}}, `publish[0]`},
		{ContainerSpec{Expose: []string{"80/sctp"}}, `expose[0]`},
	} {
		if _, err := bad.s.ToConfig(); err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want %q", bad.s, err, bad.want)
		}
	}
}

// FuzzContainerSpec feeds API request bodies through the decoder and the
// parser: no panic, and whatever parses writes back to a spec that parses
// to the same container.
func FuzzContainerSpec(f *testing.F) {
	f.Add(`{"name":"a","networks":["web"],"ip":{"web":"10.0.0.2"},"publish":["80","8080:80/udp"],"expose":["9000-9002"],"extra_hosts":["db:[2001:db8::1]"]}`)
	f.Add(`{"name":"b","mode":"container:a","dns":["::1"]}`)
	f.Add(`{"publish":["[::]:80:80"]}`)
	f.Fuzz(func(t *testing.T, body string) {
		var s ContainerSpec
		if json.Unmarshal([]byte(body), &s) != nil {
			return
		}
		c, err := s.ToConfig()
		if err != nil {
			return
		}
		c2, err := SpecFromConfig(c).ToConfig()
		if err != nil {
			t.Fatalf("spec written from a parsed container does not parse: %v", err)
		}
		if !reflect.DeepEqual(SpecFromConfig(c), SpecFromConfig(c2)) {
			t.Fatalf("unstable: %+v vs %+v", SpecFromConfig(c), SpecFromConfig(c2))
		}
	})
}
