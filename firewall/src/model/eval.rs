//! An interpreter of the generated ruleset: what nftables would decide for one packet.
//!
//! It reads the same sets and chains that are rendered for nftables, never the Kubernetes
//! objects, so tests of it test what is programmed.

use std::net::IpAddr;

use super::ruleset::*;

/// The transport part of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Port { protocol: Protocol, dport: u16 },
    Icmp { icmp_type: u8 },
    Icmpv6 { icmp_type: u8 },
}

/// A packet arriving at the forward hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ct_state: CtState,
    pub transport: Transport,
}

/// Final verdict for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

/// The ruleset cannot be evaluated (it would also be rejected by nft).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("packet mixes address families: {0} -> {1}")]
    MixedFamilies(IpAddr, IpAddr),
    #[error("rule references unknown set @{0}")]
    UnknownSet(String),
    #[error("set @{set} is {actual:?}, the match needs {expected:?}")]
    SetTypeMismatch {
        set: String,
        expected: (Family, SetKind),
        actual: (Family, SetKind),
    },
    #[error("jump to unknown chain {0}")]
    UnknownChain(String),
    #[error("jumps nest deeper than {0}")]
    TooDeep(usize),
    #[error("ruleset has no forward base chain")]
    NoForwardChain,
}

const MAX_DEPTH: usize = 16;

/// Evaluates the forward base chain for `packet` (pod traffic routed or bridged by the node).
pub fn evaluate(ruleset: &Ruleset, packet: &Packet) -> Result<Verdict, EvalError> {
    evaluate_at(ruleset, Hook::Forward, packet)
}

/// Evaluates the base chain on `hook`; a hook without a base chain accepts.
pub fn evaluate_at(ruleset: &Ruleset, hook: Hook, packet: &Packet) -> Result<Verdict, EvalError> {
    if Family::of(&packet.src) != Family::of(&packet.dst) {
        return Err(EvalError::MixedFamilies(packet.src, packet.dst));
    }
    let Some(base) = ruleset
        .chains
        .iter()
        .find(|c| c.base.is_some_and(|b| b.hook == hook))
    else {
        if hook == Hook::Forward {
            return Err(EvalError::NoForwardChain);
        }
        return Ok(Verdict::Accept);
    };
    match run_chain(ruleset, base, packet, 0)? {
        Some(v) => Ok(v),
        None => Ok(match base.base.map(|b| b.policy) {
            Some(ChainPolicy::Drop) => Verdict::Drop,
            _ => Verdict::Accept,
        }),
    }
}

/// Whether a new connection `src -> dst` on `protocol`/`port` is let through (forward hook).
pub fn allows(
    ruleset: &Ruleset,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Result<bool, EvalError> {
    allows_at(ruleset, Hook::Forward, src, dst, protocol, port)
}

/// [`allows`] on a given hook: `Hook::Output` is the path of service traffic that IPVS
/// forwards from the node after DNAT (source: the client pod, destination: the backend pod).
pub fn allows_at(
    ruleset: &Ruleset,
    hook: Hook,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Result<bool, EvalError> {
    let packet = Packet {
        src,
        dst,
        ct_state: CtState::New,
        transport: Transport::Port {
            protocol,
            dport: port,
        },
    };
    Ok(evaluate_at(ruleset, hook, &packet)? == Verdict::Accept)
}

/// `Some(verdict)` ends evaluation; `None` returns to the caller (or falls off the chain).
fn run_chain(
    ruleset: &Ruleset,
    chain: &Chain,
    packet: &Packet,
    depth: usize,
) -> Result<Option<Verdict>, EvalError> {
    if depth > MAX_DEPTH {
        return Err(EvalError::TooDeep(MAX_DEPTH));
    }
    for rule in &chain.rules {
        let mut all = true;
        for m in &rule.matches {
            if !matches(ruleset, m, packet)? {
                all = false;
                break;
            }
        }
        if !all {
            continue;
        }
        match &rule.action {
            Action::Accept => return Ok(Some(Verdict::Accept)),
            Action::Drop => return Ok(Some(Verdict::Drop)),
            Action::Return => return Ok(None),
            Action::Log { .. } => {}
            Action::Jump(target) => {
                let next = ruleset
                    .chain(target)
                    .ok_or_else(|| EvalError::UnknownChain(target.clone()))?;
                if let Some(v) = run_chain(ruleset, next, packet, depth + 1)? {
                    return Ok(Some(v));
                }
            }
        }
    }
    Ok(None)
}

fn lookup<'a>(
    ruleset: &'a Ruleset,
    name: &str,
    family: Family,
    kinds: &[SetKind],
) -> Result<&'a Set, EvalError> {
    let set = ruleset
        .sets
        .get(name)
        .ok_or_else(|| EvalError::UnknownSet(name.to_string()))?;
    if set.family != family || !kinds.contains(&set.kind) {
        return Err(EvalError::SetTypeMismatch {
            set: name.to_string(),
            expected: (family, kinds[0]),
            actual: (set.family, set.kind),
        });
    }
    Ok(set)
}

fn matches(ruleset: &Ruleset, m: &Match, p: &Packet) -> Result<bool, EvalError> {
    let family = Family::of(&p.src);
    Ok(match m {
        Match::CtState(states) => states.contains(&p.ct_state),
        Match::Addr {
            field,
            family: f,
            set,
        } => {
            // The set is type-checked even for packets of the other family, as nft does at load.
            let s = lookup(ruleset, set, *f, &[SetKind::Addr, SetKind::Interval])?;
            if *f != family {
                return Ok(false);
            }
            let addr = match field {
                AddrField::Saddr => p.src,
                AddrField::Daddr => p.dst,
            };
            match s.kind {
                SetKind::Interval => s.elements.iter().any(|e| match e {
                    SetElement::Net(n) => n.contains(&addr),
                    SetElement::Addr(a) => *a == addr,
                    SetElement::AddrProtoPort(..) => false,
                }),
                _ => s.elements.contains(&SetElement::Addr(addr)),
            }
        }
        Match::Protocol(proto) => {
            matches!(p.transport, Transport::Port { protocol, .. } if protocol == *proto)
        }
        Match::DestPort { first, last } => {
            matches!(p.transport, Transport::Port { dport, .. } if (*first..=*last).contains(&dport))
        }
        Match::NamedPort { family: f, set } => {
            let s = lookup(ruleset, set, *f, &[SetKind::AddrProtoPort])?;
            match p.transport {
                Transport::Port { protocol, dport } if *f == family => s
                    .elements
                    .contains(&SetElement::AddrProtoPort(p.dst, protocol, dport)),
                _ => false,
            }
        }
        Match::SourceIsLocal => {
            let set = super::node_set(family);
            lookup(ruleset, &set, family, &[SetKind::Addr])?
                .elements
                .contains(&SetElement::Addr(p.src))
        }
        Match::Icmp(types) => match p.transport {
            Transport::Icmp { icmp_type } if family == Family::Ipv4 => {
                types.iter().any(|t| *t as u8 == icmp_type)
            }
            _ => false,
        },
        Match::Icmpv6(types) => match p.transport {
            Transport::Icmpv6 { icmp_type } if family == Family::Ipv6 => {
                types.iter().any(|t| *t as u8 == icmp_type)
            }
            _ => false,
        },
    })
}
