//! Node objects -> BGP peers, originated pod CIDRs, import filters and the CNI conflist (pure).
