package bench

import (
	"context"
	"os/exec"
)

// The docker area: the attach, DNS, -p and overlay measures against
// dockerd (and Swarm for the overlay) running inside lab host namespaces
// with private mount namespaces. The dockerd-in-a-namespace harness is
// being built (issue 15); until it lands this area says why it did not
// run.

func runDocker(_ context.Context, r *Runner) error {
	r.skip("docker", "", dockerSkipReason(exec.LookPath))
	return nil
}

// dockerSkipReason says why the docker area does not run; lookPath finds
// binaries (exec.LookPath).
func dockerSkipReason(lookPath func(string) (string, error)) string {
	if _, err := lookPath("dockerd"); err != nil {
		return "dockerd not installed"
	}
	return "dockerd is installed, but the dockerd-in-a-namespace harness is not merged yet (issue 15)"
}
