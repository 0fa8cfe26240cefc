package ipt

import (
	"strings"
	"testing"
)

func TestRuleFields(t *testing.T) {
	words, comment := RuleFields(`-A VXMESH-FORWARD -o br-web -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "vxmesh: network web" -j ACCEPT`)
	if comment != "vxmesh: network web" || len(words) != 10 || words[len(words)-1] != "ACCEPT" {
		t.Errorf("words %q, comment %q", words, comment)
	}
	if d := RuleDevices(`-A X -s 10.0.0.0/8 ! -o br-web -j MASQUERADE`); len(d) != 1 || d[0] != "br-web" {
		t.Errorf("devices %q", d)
	}
	if _, c := RuleFields(`-A X -m comment --comment plain -j ACCEPT`); c != "plain" {
		t.Errorf("unquoted comment %q", c)
	}
}

// FuzzRuleFields: any line iptables might print splits without a panic
// into words without spaces.
func FuzzRuleFields(f *testing.F) {
	f.Add(`-A X -m comment --comment "vxmesh: a b" -j ACCEPT`)
	f.Add(`-A X --comment "unterminated -j Y`)
	f.Add(`--comment `)
	f.Fuzz(func(t *testing.T, rule string) {
		words, comment := RuleFields(rule)
		for _, w := range words {
			if strings.ContainsAny(w, " \t\n") {
				t.Fatalf("word %q has space", w)
			}
		}
		_ = comment
		_ = RuleDevices(rule)
	})
}
