//! BGP tests (below).
