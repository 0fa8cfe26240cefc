// Package bench is `vxmesh bench`: every performance claim of vxmesh,
// measured in one run next to its baseline, on namespaces the run builds
// and removes itself.
//
// Design notes.
//
// One run, one table. Each area (dataplane, programming, scale, cost,
// attach, docker) produces rows; a row is one figure, the baseline it is
// compared with (measured in the same run, between the same namespaces,
// or a documented target where no baseline exists), their ratio, the
// machine's 1-minute load average before and after the measurement, and
// the command that reproduces it. The table says how busy the machine was
// because on a shared machine the absolute figures move with the load and
// only the ratios travel.
//
// Real things only. The data plane and attach areas run real agents as
// `vxmesh lab` does (package lab: the binary re-executed per host inside
// its namespace), the overlay's programming uses the overlay package on a
// fresh device (overlay/overlaybench), the gossip scale runs in-process
// memberlist clusters bound to loopback addresses inside a fresh
// namespace (gossip's bench harness). Traffic is Go sockets opened inside
// the namespaces: the kernel path is the one under test, and no tool
// beyond iproute2 (for the hand-built kernel VXLAN baseline, which is the
// point of that baseline) is needed.
//
// Nothing outside the run's namespaces changes. Every namespace carries
// the run's id ("vxb-<id>-…", labs "vxl-bench<id>-…"); the run's files,
// including the owning pid, live in RunDir/<id>. A run that dies without
// cleaning up (SIGKILL) is reaped by the next run: its labs are taken down
// and its namespaces deleted once its pid is gone.
package bench
