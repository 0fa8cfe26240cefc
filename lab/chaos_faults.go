package lab

import (
	"fmt"
	"strings"

	"github.com/vishvananda/netns"

	"github.com/vxmesh/vxmesh/internal/ipt"
	"github.com/vxmesh/vxmesh/internal/netnsutil"
)

// ChaosChain is the iptables chain (filter table, in each lab host's
// namespace, never the root's) that holds a chaos run's partition: DROP
// rules for the underlay addresses of the hosts cut off from this one,
// jumped to from INPUT and OUTPUT. OUTPUT catches the VXLAN packets too:
// the kernel sends encapsulated packets through the local-out hook.
const ChaosChain = "VXCHAOS"

var chaosJumps = []ipt.Jump{
	{Table: "filter", From: "INPUT", Rule: "-j " + ChaosChain},
	{Table: "filter", From: "OUTPUT", Rule: "-j " + ChaosChain},
}

// cutter applies partitions to a lab's hosts.
type cutter struct {
	plan    *Plan
	handles []netns.NsHandle
	runners []*ipt.Runner
}

// newCutter opens an iptables runner in every host namespace and installs
// the (empty) chaos chain and its jumps.
func newCutter(p *Plan) (*cutter, error) {
	c := &cutter{plan: p}
	for _, h := range p.Hosts {
		nh, err := netnsutil.Open(h.Netns)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("open netns of %s: %w", h.Name, err)
		}
		c.handles = append(c.handles, nh)
		r, err := ipt.New(nh, false)
		if err != nil {
			c.close()
			return nil, fmt.Errorf("iptables in %s: %w", h.Name, err)
		}
		c.runners = append(c.runners, r)
	}
	if err := c.apply(nil); err != nil {
		c.close()
		return nil, err
	}
	for i, r := range c.runners {
		for _, j := range chaosJumps {
			if _, err := r.EnsureJump(j); err != nil {
				c.close()
				return nil, fmt.Errorf("partition jump in %s: %w", p.Hosts[i].Name, err)
			}
		}
	}
	return c, nil
}

// apply makes the partition be exactly cut: pairs of host indexes that
// cannot reach each other (nil heals every cut).
func (c *cutter) apply(cut [][2]int) error {
	for i, r := range c.runners {
		var rules []string
		for _, pr := range cut {
			other := -1
			switch i {
			case pr[0]:
				other = pr[1]
			case pr[1]:
				other = pr[0]
			}
			if other < 0 {
				continue
			}
			a := c.plan.Hosts[other].Address.String()
			rules = append(rules, "-s "+a+"/32 -j DROP", "-d "+a+"/32 -j DROP")
		}
		if _, err := r.SyncChains("filter", []ipt.Chain{{Name: ChaosChain, Rules: rules}}); err != nil {
			return fmt.Errorf("partition rules in %s: %w", c.plan.Hosts[i].Name, err)
		}
	}
	return nil
}

// remove deletes the jumps and the chain from every host and closes the
// handles.
func (c *cutter) remove() error {
	var errs []string
	for i, r := range c.runners {
		for _, j := range chaosJumps {
			if err := r.DeleteJump(j); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if err := r.DeleteChain("filter", ChaosChain); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", c.plan.Hosts[i].Name, err))
		}
	}
	c.close()
	if len(errs) > 0 {
		return fmt.Errorf("remove partition rules: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (c *cutter) close() {
	for _, h := range c.handles {
		h.Close()
	}
	c.handles, c.runners = nil, nil
}
