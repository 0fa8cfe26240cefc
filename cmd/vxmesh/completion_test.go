package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestBashCompletion sources the generated script in bash and asks it for
// completions as bash would, word by word.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	code, script, _ := runCLI(t, "", "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: exit %d", code)
	}
	f := filepath.Join(t.TempDir(), "vxmesh.bash")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		line string // words; the last is the one being completed
		want []string
		not  []string
	}{
		{"vxmesh st", []string{"status"}, []string{"run"}},
		{"vxmesh ", []string{"doctor", "keygen", "lab", "--socket"}, nil},
		{"vxmesh lab ", []string{"up", "down", "status", "exec"}, []string{"--json"}},
		{"vxmesh lab up --", []string{"--hosts", "--name", "--wait"}, []string{"--json"}},
		{"vxmesh --socket /x lab st", []string{"status"}, nil},
		{"vxmesh agent --log-", []string{"--log-format", "--log-level"}, nil},
		{"vxmesh run -", []string{"-p", "-P", "--network"}, nil},
		{"vxmesh doctor --", []string{"--json", "--host", "--no-probes"}, nil},
	} {
		words := strings.Split(c.line, " ")
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		prog := "source " + f + "; COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" +
			itoa(len(words)-1) + "; _vxmesh; printf '%s\\n' \"${COMPREPLY[@]}\""
		out, err := exec.Command(bash, "--norc", "--noprofile", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", c.line, err, out)
		}
		got := strings.Fields(string(out))
		for _, w := range c.want {
			if !contains(got, w) {
				t.Errorf("%q: completions %v lack %q", c.line, got, w)
			}
		}
		for _, w := range c.not {
			if contains(got, w) {
				t.Errorf("%q: completions %v hold %q", c.line, got, w)
			}
		}
	}
}

func TestZshCompletionScript(t *testing.T) {
	code, script, _ := runCLI(t, "", "completion", "zsh")
	if code != 0 || !strings.HasPrefix(script, "#compdef vxmesh\n") || !strings.Contains(script, "lab)") {
		t.Fatalf("completion zsh: %d\n%s", code, script)
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		if out, err := exec.Command(zsh, "-n", "-c", script).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v\n%s", err, out)
		}
	}
	if code, _, _ := runCLI(t, "", "completion", "fish"); code != 2 {
		t.Errorf("completion fish: exit %d, want 2", code)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func contains(l []string, s string) bool { return slices.Contains(l, s) }
