package agent

import (
	"os"
	"syscall"
)

// FaultEnv names the crash point of a test run: when set, the agent kills
// itself (SIGKILL, as a crash or kill -9 would) the first time a pass
// reaches that point (see bridge.Reconciler.Fault,
// overlaystep.FaultMidFDBSync and FaultBeforeStateFlush). Unset, as in production, nothing happens.
const FaultEnv = "VXMESH_FAULT"

// FaultBeforeStateFlush is the point after a pass applied everything and
// before it writes state.json.
const FaultBeforeStateFlush = "before-state-flush"

// faultHook returns the crash hook for the point named in FaultEnv, nil
// when none is.
func faultHook() func(string) {
	at := os.Getenv(FaultEnv)
	if at == "" {
		return nil
	}
	return func(point string) {
		if point == at {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// setFaults installs the crash hook, if any, on the reconciler and keeps it
// for the agent's own points.
func (a *Agent) setFaults() {
	a.fault = faultHook()
	a.br.Fault = a.fault
	if a.fault != nil && a.ovl != nil {
		a.ovl.Fault = a.fault
	}
}

// crashPoint calls the crash hook at one of the agent's own points.
func (a *Agent) crashPoint(point string) {
	if a.fault != nil {
		a.fault(point)
	}
}
