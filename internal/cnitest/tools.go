package cnitest

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cniModule is the module cnitool comes from; its version is go.mod's, so
// the tool and the plugin speak the same library.
const cniModule = "github.com/containernetworking/cni"

// BuildPlugin builds vxmesh-cni into a new directory, the CNI_PATH for the
// runtime under test, and returns that directory.
func BuildPlugin(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	goCmd(tb, "build", "-o", filepath.Join(dir, "vxmesh-cni"), "github.com/vxmesh/vxmesh/cmd/vxmesh-cni")
	return dir
}

// BuildCnitool builds cnitool from the module proxy (go install
// module/cnitool@version, independent of our go.mod's other requirements)
// and returns the binary's path.
func BuildCnitool(tb testing.TB) string {
	tb.Helper()
	ver := strings.TrimSpace(goCmd(tb, "list", "-m", "-f", "{{.Version}}", cniModule))
	dir := tb.TempDir()
	cmd := exec.Command("go", "install", cniModule+"/cnitool@"+ver)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build cnitool %s: %v\n%s", ver, err, out)
	}
	return filepath.Join(dir, "cnitool")
}

func goCmd(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Busybox fills dir with a root filesystem holding the static busybox
// (Debian's busybox-static) and its applets as links, for podman --rootfs.
func Busybox(tb testing.TB, dir string) {
	tb.Helper()
	const bin = "/bin/busybox"
	if f, err := elf.Open(bin); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				tb.Fatalf("%s is linked dynamically: install busybox-static", bin)
			}
		}
		f.Close()
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		tb.Fatalf("read %s (install busybox-static): %v", bin, err)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "www"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, applet := range []string{"sh", "ip", "ping", "cat", "ls", "hostname", "sleep", "nc", "wget", "httpd", "nslookup", "echo", "grep"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("vxmesh-podman\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
}
