package explain

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vxmesh/vxmesh/agent/api"
	"github.com/vxmesh/vxmesh/bridge"
	"github.com/vxmesh/vxmesh/bridge/portmap"
	"github.com/vxmesh/vxmesh/internal/ipt"
)

// chainPurpose says what each chain of ours is for.
var chainPurpose = map[string]string{
	bridge.ChainDNAT:        "published ports (DNAT)",
	bridge.ChainPostrouting: "outbound NAT (masquerade)",
	bridge.ChainHairpin:     "containers reaching their own published port",
	bridge.ChainForward:     "forwarding to and from the networks",
	bridge.ChainPublished:   "traffic to published ports",
	bridge.ChainIsolation:   "isolation between networks",
}

// jumpNote describes a jump into one of our chains.
func jumpNote(target string) string {
	if p, ok := chainPurpose[target]; ok {
		return "jump to " + target + ": " + p
	}
	return "jump to " + target
}

func (c *Causes) annotateRule(ch *api.InspectChain, r *api.InspectRule) {
	if ch.Builtin {
		r.Note = jumpNote(bridge.JumpTarget(r.Rule))
		return
	}
	if ctr, ok := portmap.ContainerOfRule(r.Rule); ok {
		c.annotatePortRule(ch, r, ctr)
		return
	}
	words, comment := ipt.RuleFields(r.Rule)
	var nets []string
	for _, dev := range ipt.RuleDevices(r.Rule) {
		n := c.networkOfBridge(dev)
		if n == nil {
			r.Unknown, r.Note = true, fmt.Sprintf("bridge %q is not one of the agent's networks: stale", dev)
			return
		}
		if !slices.Contains(nets, n.Name) {
			nets = append(nets, n.Name)
		}
	}
	if len(nets) > 0 {
		r.Network = nets[0]
	}
	r.Note = ruleNote(comment, words)
}

// annotatePortRule explains a rule portmap wrote for container ctr's
// published port.
func (c *Causes) annotatePortRule(ch *api.InspectChain, r *api.InspectRule, ctr string) {
	_, comment := ipt.RuleFields(r.Rule)
	r.Container = ctr
	port := strings.TrimPrefix(comment, portmap.CommentPrefix+ctr+" ")
	switch ch.Chain {
	case bridge.ChainDNAT:
		r.Note = "published port " + port
	case bridge.ChainHairpin:
		r.Note = port + ": the container reaching its own published port through the host address"
	case bridge.ChainPublished:
		r.Note = port + ": let the published port's traffic in"
	default:
		r.Note = port
	}
	ms := c.Ports[ctr]
	if len(ms) == 0 {
		r.Unknown, r.Note = true, "no published port of this container in the agent's view: stale"
		return
	}
	if n := c.networkOfBridge(ms[0].Bridge); n != nil {
		r.Network = n.Name
	}
}

// ruleTarget is the last -j or -g target among a rule's words.
func ruleTarget(words []string) string {
	target := ""
	for i := 0; i+1 < len(words); i++ {
		if words[i] == "-j" || words[i] == "-g" {
			target = words[i+1]
		}
	}
	return target
}

// ruleNote explains a rule bridge/ wrote, from its comment and words.
func ruleNote(comment string, words []string) string {
	target := ruleTarget(words)
	if !strings.HasPrefix(comment, "vxmesh: ") {
		if strings.HasPrefix(target, bridge.ChainPrefix) {
			return jumpNote(target)
		}
		return comment
	}
	has := func(w string) bool { return slices.Contains(words, w) }
	what, arg, _ := strings.Cut(strings.TrimPrefix(comment, "vxmesh: "), " ")
	switch {
	case what == "masquerade":
		return "outbound traffic leaves with the host's address"
	case what == "internal":
		return "internal network: nothing in or out"
	case what == "isolate":
		from, to, _ := strings.Cut(arg, " from ")
		return "containers on " + from + " do not reach " + to
	case what == "network" && target == "ACCEPT" && has("-i") && has("-o"):
		return "traffic within the internal network"
	case what == "network" && target == "ACCEPT" && has("-i"):
		return "traffic from its containers may go anywhere"
	case what == "network" && target == "ACCEPT" && has("--ctstate"):
		return "replies come back in"
	case what == "network" && target == "DROP":
		return "nothing else gets in (no route straight to a container)"
	}
	return strings.TrimPrefix(comment, "vxmesh: ")
}
