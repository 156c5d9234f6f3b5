//! xcluster-tests: the multi-node test harness.
//! Test hosts in network namespaces on shared segments, real BGP peers (BIRD, GoBGP, FRR),
//! pods made by the real CNI bridge plugin, and the VM tier for kernels with IPVS.
