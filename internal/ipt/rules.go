package ipt

import "strings"

// RuleFields splits a rule as `iptables -S` prints it into its words
// outside the comment, and the comment ("-m comment" is left out too).
func RuleFields(rule string) (words []string, comment string) {
	const key = "--comment "
	if i := strings.Index(rule, key); i >= 0 {
		rest := rule[i+len(key):]
		if strings.HasPrefix(rest, `"`) {
			if j := strings.Index(rest[1:], `"`); j >= 0 {
				comment = rest[1 : j+1]
				rest = rest[j+2:]
			}
		} else {
			comment, rest, _ = strings.Cut(rest, " ")
		}
		head := strings.TrimSuffix(strings.TrimSpace(rule[:i]), "-m comment")
		rule = head + " " + rest
	}
	return strings.Fields(rule), comment
}

// RuleDevices are the interfaces a rule matches (-i, -o), in order.
func RuleDevices(rule string) []string {
	w, _ := RuleFields(rule)
	var out []string
	for i := 0; i+1 < len(w); i++ {
		if w[i] == "-i" || w[i] == "-o" {
			out = append(out, w[i+1])
		}
	}
	return out
}
