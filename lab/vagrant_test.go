package lab

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/vxmesh/vxmesh/config"
)

// TestVagrantConfigsAgree checks what can be checked of the Vagrant lab
// without running VMs: every VM in the Vagrantfile has a valid config whose
// host name and address are the VM's, and whose join list names the other
// VMs.
func TestVagrantConfigsAgree(t *testing.T) {
	vf, err := os.ReadFile("../Vagrantfile")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"(h\d+)"\s*=>\s*"([0-9.]+)"`)
	vms := map[string]netip.Addr{}
	for _, m := range re.FindAllSubmatch(vf, -1) {
		vms[string(m[1])] = netip.MustParseAddr(string(m[2]))
	}
	if len(vms) != 3 {
		t.Fatalf("Vagrantfile names %d hosts, want 3: %v", len(vms), vms)
	}
	files, _ := filepath.Glob("../examples/vagrant/*.yaml")
	if len(files) != len(vms) {
		t.Fatalf("examples/vagrant has %d configs for %d VMs", len(files), len(vms))
	}
	for name, addr := range vms {
		cfg, err := config.Load(filepath.Join("../examples/vagrant", name+".yaml"))
		if err != nil {
			t.Fatalf("config of VM %s: %v", name, err)
		}
		if cfg.Host.Name != name || cfg.Host.Address != addr {
			t.Errorf("VM %s at %s: config says host %s at %s", name, addr, cfg.Host.Name, cfg.Host.Address)
		}
		var joins []netip.Addr
		for _, j := range cfg.Cluster.Join {
			joins = append(joins, j.Addr)
		}
		for other, oaddr := range vms {
			if other != name && !slices.Contains(joins, oaddr) {
				t.Errorf("VM %s does not join %s at %s (join: %v)", name, other, oaddr, joins)
			}
		}
	}
}
