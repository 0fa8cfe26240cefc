package dockerplugin

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// protoNames maps libnetwork's IP protocol numbers to names.
var protoNames = map[int]string{6: "tcp", 17: "udp", 132: "sctp"}

// portBindings reads the -p bindings libnetwork passes in a sandbox's
// options. Absent means none.
func portBindings(opts map[string]json.RawMessage) ([]PortBinding, error) {
	raw, ok := opts[optPortMap]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var wire []wirePortBinding
	if err := json.Unmarshal(raw, &wire); err != nil {
		return nil, fmt.Errorf("decode %s: %w", optPortMap, err)
	}
	out := make([]PortBinding, 0, len(wire))
	for _, w := range wire {
		b, err := portBinding(w)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// portBinding checks and converts one wire binding.
func portBinding(w wirePortBinding) (PortBinding, error) {
	proto, ok := protoNames[w.Proto]
	if !ok {
		return PortBinding{}, fmt.Errorf("port binding %d: unknown protocol number %d", w.Port, w.Proto)
	}
	if w.Port < 1 || w.Port > 65535 {
		return PortBinding{}, fmt.Errorf("port binding: container port %d out of range", w.Port)
	}
	if w.HostPort < 0 || w.HostPort > 65535 || w.HostPortEnd < 0 || w.HostPortEnd > 65535 {
		return PortBinding{}, fmt.Errorf("port binding %d/%s: host port %d-%d out of range", w.Port, proto, w.HostPort, w.HostPortEnd)
	}
	if w.HostPortEnd != 0 && w.HostPortEnd < w.HostPort {
		return PortBinding{}, fmt.Errorf("port binding %d/%s: host port range %d-%d is backwards", w.Port, proto, w.HostPort, w.HostPortEnd)
	}
	b := PortBinding{Proto: proto, Port: uint16(w.Port), HostPort: uint16(w.HostPort), HostPortEnd: uint16(w.HostPortEnd)}
	if w.HostIP != "" {
		ip, err := netip.ParseAddr(w.HostIP)
		if err != nil {
			return PortBinding{}, fmt.Errorf("port binding %d/%s: host ip: %w", w.Port, proto, err)
		}
		b.HostIP = ip.Unmap()
	}
	return b, nil
}

// genericOption reads one -o driver option of a CreateNetwork.
func genericOption(opts map[string]json.RawMessage, key string) (string, error) {
	raw, ok := opts[optGeneric]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var generic map[string]string
	if err := json.Unmarshal(raw, &generic); err != nil {
		return "", fmt.Errorf("decode %s: %w", optGeneric, err)
	}
	return generic[key], nil
}
