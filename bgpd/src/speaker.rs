//! The embedding API: a `Speaker` handle that runs sessions and the RIB on tokio.
