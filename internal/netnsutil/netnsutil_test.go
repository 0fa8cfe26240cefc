package netnsutil

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

func TestCreateDoDelete(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("vxt-nsu-%06x", rand.IntN(1<<24))
	t.Cleanup(func() { Delete(name) })

	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	created, err := Ensure(name)
	if err != nil || !created {
		t.Fatalf("Ensure(%q) = %v, %v; want created", name, created, err)
	}
	if created, err := Ensure(name); err != nil || created {
		t.Fatalf("second Ensure(%q) = %v, %v; want adopted", name, created, err)
	}
	if err := Create(name); err == nil {
		t.Fatalf("Create(%q) on an existing namespace succeeded", name)
	}
	var links []netlink.Link
	if err := Do(name, func() error {
		var err error
		links, err = netlink.LinkList()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("new namespace holds %d links, want only lo", len(links))
	}
	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) {
		t.Fatal("the caller's thread changed namespace")
	}
	names, err := List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == name
	}
	if !found {
		t.Fatalf("List() = %v, missing %q", names, name)
	}
	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Fatal("namespace still exists after Delete")
	}
	if err := Delete(name); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"h1", true}, {"", false}, {".", false}, {"..", false}, {"a/b", false}, {"web-1.lab", true}} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestByPath: a namespace given by its file path (a runtime's CNI_NETNS)
// is found, opened and entered like a named one; other files are not
// namespaces.
func TestByPath(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("vxt-nsp-%06x", rand.IntN(1<<24))
	t.Cleanup(func() { Delete(name) })
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ns   string
		want bool
	}{
		{Path(name), true},
		{"/proc/self/ns/net", true},
		{"/etc/hostname", false},
		{"/run/netns/../netns/" + name, false}, // not clean: never taken as a path
		{Dir + "/vxt-missing-ns", false},
	}
	for _, tt := range tests {
		if got := Exists(tt.ns); got != tt.want {
			t.Errorf("Exists(%q) = %v, want %v", tt.ns, got, tt.want)
		}
	}
	if err := Do(Path(name), func() error {
		_, err := netlink.LinkByName("lo")
		return err
	}); err != nil {
		t.Fatalf("Do by path: %v", err)
	}
}
