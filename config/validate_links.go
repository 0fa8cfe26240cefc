package config

import (
	"strings"
)

// links checks a container's legacy links: each names another container
// that shares a network with this one. A name no local container has may
// be a container on another host, which only an overlay network can reach.
func (v *validator) links(env *netEnv, c *Container, f func(string) string, onNet map[string]bool) {
	seen := map[string]bool{}
	for j, l := range c.Links {
		lp := indexPath(f("links"), j)
		if l.Name == "" {
			continue // did not parse; reported by the decoder
		}
		key := strings.ToLower(l.Name)
		switch {
		case strings.EqualFold(l.Name, c.Name):
			v.errorf(lp, "link %q: a container cannot link to itself", l.String())
			continue
		case seen[key]:
			v.errorf(lp, "link %q: container %q is linked twice", l.String(), l.Name)
			continue
		}
		seen[key] = true
		if len(c.Networks) == 0 {
			v.errorf(lp, "link %q: links need networks (the container is on none)", l.String())
			continue
		}
		if env.broken {
			continue
		}
		if o := env.ctrs[key]; o != nil {
			if shared := sharedNetwork(o, onNet); !shared {
				v.errorf(lp, "link %q: container %q shares no network with this container", l.String(), o.Name)
			}
			continue
		}
		if !onOverlay(env, c) {
			v.errorf(lp, "link %q: container %q does not exist (a container on another host is only reachable over an overlay network)", l.String(), l.Name)
		}
	}
}

// sharedNetwork reports whether o is on one of the networks in onNet.
func sharedNetwork(o *Container, onNet map[string]bool) bool {
	for _, n := range o.Networks {
		if onNet[n] {
			return true
		}
	}
	return false
}

// onOverlay reports whether c is on an overlay network.
func onOverlay(env *netEnv, c *Container) bool {
	for _, name := range c.Networks {
		if n := env.byName[name]; n != nil && effDriver(n) == DriverOverlay {
			return true
		}
	}
	return false
}
