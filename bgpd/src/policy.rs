//! Import and export policy: prefix lists, communities, AS-path prepend, max-prefix.
