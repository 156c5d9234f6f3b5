//! IPVS over generic netlink (family "IPVS"): typed requests and replies.
