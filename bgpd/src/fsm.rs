//! The RFC 4271 session state machine, Sans-IO: inputs in, actions out.
