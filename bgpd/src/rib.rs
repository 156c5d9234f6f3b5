//! Routing information bases: Adj-RIB-In, Loc-RIB with the decision process, Adj-RIB-Out, per (AFI, SAFI).
