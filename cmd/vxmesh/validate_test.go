package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// runCLI runs the command line as main does and returns exit code, stdout
// and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// exampleFiles lists every example config outside examples/invalid, from
// the repository root.
func exampleFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir("examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path == filepath.Join("examples", "invalid") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found only %d example files: %v", len(files), files)
	}
	return files
}

func TestValidateExamples(t *testing.T) {
	t.Chdir("../..")
	files := exampleFiles(t)
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", "validate", f)
			if code != 0 || errOut != "" || out != f+": ok\n" {
				t.Errorf("vxmesh validate %s: exit %d\nstdout:\n%s\nstderr:\n%s", f, code, out, errOut)
			}
		})
	}
	// Each directory is one cluster (examples/lab, ...), checked together;
	// and the command of the README and issue 3.
	groups := map[string][]string{}
	for _, f := range files {
		groups[filepath.Dir(f)] = append(groups[filepath.Dir(f)], f)
	}
	top, _ := filepath.Glob("examples/*.yaml")
	lab, _ := filepath.Glob("examples/lab/*.yaml")
	groups["readme"] = append(top, lab...)
	for name, g := range groups {
		t.Run("together/"+name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", append([]string{"validate"}, g...)...)
			if code != 0 || errOut != "" {
				t.Errorf("vxmesh validate %s: exit %d\nstderr:\n%s", strings.Join(g, " "), code, errOut)
			}
			if n := strings.Count(out, ": ok\n"); n != len(g) {
				t.Errorf("want %d ok lines, got:\n%s", len(g), out)
			}
		})
	}
}

// TestValidateInvalidExamples runs every example in examples/invalid — a
// file, or a directory of files checked together as one cluster — and
// compares stderr with the sibling .want file exactly.
func TestValidateInvalidExamples(t *testing.T) {
	t.Chdir("../..")
	dir := filepath.Join("examples", "invalid")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	wants := map[string]bool{}
	cases := 0
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".want") {
			wants[strings.TrimSuffix(name, ".want")] = true
		}
	}
	for _, e := range entries {
		name := e.Name()
		var base string
		var args []string
		switch {
		case e.IsDir():
			base = name
			files, _ := filepath.Glob(filepath.Join(dir, name, "*.yaml"))
			sort.Strings(files)
			args = files
		case strings.HasSuffix(name, ".yaml"):
			base = strings.TrimSuffix(name, ".yaml")
			args = []string{filepath.Join(dir, name)}
		default:
			continue
		}
		cases++
		delete(wants, base)
		t.Run(base, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, base+".want"))
			if err != nil {
				t.Fatalf("every invalid example needs a .want file: %v", err)
			}
			if len(bytes.TrimSpace(want)) == 0 {
				t.Fatalf("%s.want is empty", base)
			}
			code, out, errOut := runCLI(t, "", append([]string{"validate"}, args...)...)
			if code != exitError {
				t.Errorf("exit %d, want %d", code, exitError)
			}
			if errOut != string(want) {
				t.Errorf("vxmesh validate %s\n--- got stderr:\n%s--- want (%s.want):\n%s", strings.Join(args, " "), errOut, base, want)
			}
			var wantOut string
			if e.IsDir() { // each file is valid alone; the cluster is not
				for _, a := range args {
					wantOut += a + ": ok\n"
				}
			}
			if out != wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, wantOut)
			}
		})
	}
	for base := range wants {
		t.Errorf("%s.want has no example %s.yaml or directory %s/", base, base, base)
	}
	if cases < 30 {
		t.Errorf("only %d invalid examples", cases)
	}
}

// TestValidateReportsAllErrors checks that one file with many problems
// gets all of them, sorted by position.
func TestValidateReportsAllErrors(t *testing.T) {
	t.Chdir("../..")
	code, _, errOut := runCLI(t, "", "validate", "examples/invalid/many-errors.yaml")
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code != exitError || len(lines) < 10 {
		t.Fatalf("exit %d, %d error lines, want 1 and at least 10:\n%s", code, len(lines), errOut)
	}
	for _, path := range []string{"host.address", "networks[0].gateway", "networks[1].name", "networks[2].vni",
		"containers[0].networks[2]", "containers[0].ip.web", "containers[0].publish[1]", "containers[0].publish[2]",
		"containers[0].extra_hosts[0]", "containers[1].mode", "containers[2].netwroks", "cluster.reap_after"} {
		if !strings.Contains(errOut, ": "+path+": ") {
			t.Errorf("no error for %s in:\n%s", path, errOut)
		}
	}
}

func TestValidateUsageAndIO(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	goodYAML := "host: {name: h1, address: 198.18.0.1}\n"
	if err := os.WriteFile(good, []byte(goodYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	tests := []struct {
		name       string
		stdin      string
		args       []string
		code       int
		out, inErr string
	}{
		{name: "no files", args: []string{"validate"}, code: exitUsage, inErr: "no config files given"},
		{name: "help", args: []string{"validate", "--help"}, code: exitOK, out: "usage: vxmesh validate [flags] FILE..."},
		{name: "good", args: []string{"validate", good}, code: exitOK, out: good + ": ok\n"},
		{name: "missing", args: []string{"validate", missing}, code: exitError, inErr: missing + ": cannot read: no such file or directory\n"},
		{name: "directory", args: []string{"validate", dir}, code: exitError, inErr: dir + ": cannot read: is a directory\n"},
		{name: "good and missing", args: []string{"validate", good, missing}, code: exitError, out: good + ": ok\n", inErr: "no such file"},
		{name: "stdin", stdin: goodYAML, args: []string{"validate", "-"}, code: exitOK, out: "<stdin>: ok\n"},
		{name: "stdin bad", stdin: "host: {name: h1}\n", args: []string{"validate", "-"}, code: exitError, inErr: "<stdin>:1:7: host.address: missing required field\n"},
		{name: "same host twice", args: []string{"validate", good, good}, code: exitError, inErr: `host.name: "h1" is also the name of host "h1"`},
		{name: "same host twice, no cluster", args: []string{"validate", "--no-cluster", good, good}, code: exitOK, out: good + ": ok\n" + good + ": ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if !strings.Contains(out, tt.out) {
				t.Errorf("stdout %q does not contain %q", out, tt.out)
			}
			if !strings.Contains(errOut, tt.inErr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.inErr)
			}
			if tt.code == exitOK && errOut != "" {
				t.Errorf("stderr not empty: %q", errOut)
			}
		})
	}
}
