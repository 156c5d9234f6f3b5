//! NetworkPolicies + Pods + Namespaces -> the desired nftables ruleset (pure).
