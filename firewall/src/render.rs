//! Renders a [`Ruleset`] as `nft -f` text and as libnftables JSON (the `nftables` crate's schema).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use nftables::expr::{
    CT, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, Range, SetItem,
};
use nftables::schema::{self, NfCmd, NfListObject, Nftables, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{self, JumpTarget, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::model::delta::SetDelta;
use crate::model::ruleset::*;

/// The table block alone (what `nft list table inet <name>` would show, modulo formatting).
pub fn to_nft_text(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table inet {} {{", ruleset.table);
    for (name, set) in &ruleset.sets {
        let _ = writeln!(out, "\tset {name} {{");
        let _ = writeln!(out, "\t\ttype {}", set_type_text(set));
        if set.kind == SetKind::Interval {
            let _ = writeln!(out, "\t\tflags interval");
        }
        let _ = writeln!(out, "\t\tcomment {}", quote(&set.comment));
        if !set.elements.is_empty() {
            let elems: Vec<String> = set.elements.iter().map(element_text).collect();
            let _ = writeln!(out, "\t\telements = {{ {} }}", elems.join(", "));
        }
        let _ = writeln!(out, "\t}}");
    }
    for chain in &ruleset.chains {
        let _ = writeln!(out, "\tchain {} {{", chain.name);
        if let Some(b) = chain.base {
            let hook = match b.hook {
                Hook::Forward => "forward",
                Hook::Output => "output",
            };
            let policy = match b.policy {
                ChainPolicy::Accept => "accept",
                ChainPolicy::Drop => "drop",
            };
            let _ = writeln!(
                out,
                "\t\ttype filter hook {hook} priority {}; policy {policy};",
                b.priority
            );
        }
        for rule in &chain.rules {
            let _ = writeln!(out, "\t\t{}", rule_text(rule));
        }
        let _ = writeln!(out, "\t}}");
    }
    out.push_str("}\n");
    out
}

/// An `nft -f` script that replaces fairlead's table atomically (create, delete, recreate in
/// one transaction) and touches no other table.
pub fn to_nft_replace_script(ruleset: &Ruleset) -> String {
    format!(
        "table inet {t}\ndelete table inet {t}\n{}",
        to_nft_text(ruleset),
        t = ruleset.table
    )
}

fn set_type_text(set: &Set) -> &'static str {
    match (set.kind, set.family) {
        (SetKind::AddrProtoPort, Family::Ipv4) => "ipv4_addr . inet_proto . inet_service",
        (SetKind::AddrProtoPort, Family::Ipv6) => "ipv6_addr . inet_proto . inet_service",
        (_, Family::Ipv4) => "ipv4_addr",
        (_, Family::Ipv6) => "ipv6_addr",
    }
}

fn element_text(e: &SetElement) -> String {
    match e {
        SetElement::Addr(a) => a.to_string(),
        SetElement::Net(n) => n.to_string(),
        SetElement::AddrProtoPort(a, p, port) => format!("{a} . {} . {port}", p.nft_name()),
    }
}

fn quote(s: &str) -> String {
    // nft strings cannot contain a double quote; Kubernetes names never do, comments are ours.
    format!("\"{}\"", s.replace('"', "'"))
}

fn addr_proto(family: Family) -> &'static str {
    match family {
        Family::Ipv4 => "ip",
        Family::Ipv6 => "ip6",
    }
}

fn field_name(field: AddrField) -> &'static str {
    match field {
        AddrField::Saddr => "saddr",
        AddrField::Daddr => "daddr",
    }
}

fn match_text(m: &Match) -> String {
    match m {
        Match::CtState(states) => {
            let s: Vec<&str> = states.iter().map(|s| s.nft_name()).collect();
            format!("ct state {{ {} }}", s.join(", "))
        }
        Match::Addr { field, family, set } => {
            format!("{} {} @{set}", addr_proto(*family), field_name(*field))
        }
        Match::Protocol(p) => format!("meta l4proto {}", p.nft_name()),
        Match::DestPort { first, last } if first == last => format!("th dport {first}"),
        Match::DestPort { first, last } => format!("th dport {first}-{last}"),
        Match::NamedPort { family, set } => {
            format!(
                "{} daddr . meta l4proto . th dport @{set}",
                addr_proto(*family)
            )
        }
        Match::SourceIsLocal => "fib saddr type local".to_string(),
        Match::Icmp(types) => {
            let t: Vec<&str> = types.iter().map(|t| t.nft_name()).collect();
            format!("icmp type {{ {} }}", t.join(", "))
        }
        Match::Icmpv6(types) => {
            let t: Vec<&str> = types.iter().map(|t| t.nft_name()).collect();
            format!("icmpv6 type {{ {} }}", t.join(", "))
        }
    }
}

fn rule_text(rule: &Rule) -> String {
    let mut parts: Vec<String> = rule.matches.iter().map(match_text).collect();
    parts.push(match &rule.action {
        Action::Accept => "accept".to_string(),
        Action::Drop => "drop".to_string(),
        Action::Return => "return".to_string(),
        Action::Jump(c) => format!("jump {c}"),
        Action::Log { prefix, rate } => format!(
            "limit rate {}/second burst {} packets log prefix {}",
            rate.per_second,
            rate.burst,
            quote(prefix)
        ),
    });
    if let Some(c) = &rule.comment {
        parts.push(format!("comment {}", quote(c)));
    }
    parts.join(" ")
}

// ---- JSON (libnftables-json via the `nftables` crate) ----

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn mat(left: Expression<'static>, right: Expression<'static>, op: Operator) -> Statement<'static> {
    Statement::Match(stmt::Match { left, right, op })
}

fn anon_set(items: Vec<&'static str>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(|i| SetItem::Element(s(i))).collect(),
    ))
}

fn match_json(m: &Match) -> Statement<'static> {
    match m {
        Match::CtState(states) => mat(
            Expression::Named(NamedExpression::CT(CT {
                key: "state".into(),
                family: None,
                dir: None,
            })),
            Expression::List(states.iter().map(|st| s(st.nft_name())).collect()),
            Operator::IN,
        ),
        Match::Addr { field, family, set } => mat(
            payload(addr_proto(*family), field_name(*field)),
            s(format!("@{set}")),
            Operator::EQ,
        ),
        Match::Protocol(p) => mat(
            Expression::Named(NamedExpression::Meta(Meta {
                key: MetaKey::L4proto,
            })),
            s(p.nft_name()),
            Operator::EQ,
        ),
        Match::DestPort { first, last } => mat(
            payload("th", "dport"),
            if first == last {
                Expression::Number(u32::from(*first))
            } else {
                Expression::Range(Box::new(Range {
                    range: [
                        Expression::Number(u32::from(*first)),
                        Expression::Number(u32::from(*last)),
                    ],
                }))
            },
            Operator::EQ,
        ),
        Match::NamedPort { family, set } => mat(
            Expression::Named(NamedExpression::Concat(vec![
                payload(addr_proto(*family), "daddr"),
                Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::L4proto,
                })),
                payload("th", "dport"),
            ])),
            s(format!("@{set}")),
            Operator::EQ,
        ),
        Match::SourceIsLocal => mat(
            Expression::Named(NamedExpression::Fib(Fib {
                result: FibResult::Type,
                flags: HashSet::from([FibFlag::Saddr]),
            })),
            s("local"),
            Operator::EQ,
        ),
        Match::Icmp(types) => mat(
            payload("icmp", "type"),
            anon_set(types.iter().map(|t| t.nft_name()).collect()),
            Operator::EQ,
        ),
        Match::Icmpv6(types) => mat(
            payload("icmpv6", "type"),
            anon_set(types.iter().map(|t| t.nft_name()).collect()),
            Operator::EQ,
        ),
    }
}

fn action_json(a: &Action) -> Vec<Statement<'static>> {
    match a {
        Action::Accept => vec![Statement::Accept(None)],
        Action::Drop => vec![Statement::Drop(None)],
        Action::Return => vec![Statement::Return(None)],
        Action::Jump(c) => vec![Statement::Jump(JumpTarget {
            target: Cow::Owned(c.clone()),
        })],
        Action::Log { prefix, rate } => vec![
            Statement::Limit(stmt::Limit {
                rate: rate.per_second,
                rate_unit: None,
                per: Some("second".into()),
                burst: Some(rate.burst),
                burst_unit: None,
                inv: None,
            }),
            Statement::Log(Some(stmt::Log {
                prefix: Some(Cow::Owned(prefix.clone())),
                group: None,
                snaplen: None,
                queue_threshold: None,
                level: None,
                flags: None,
            })),
        ],
    }
}

fn element_json(e: &SetElement) -> Expression<'static> {
    match e {
        SetElement::Addr(a) => s(a.to_string()),
        SetElement::Net(n) => Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(s(n.network().to_string())),
            len: u32::from(n.prefix_len()),
        })),
        SetElement::AddrProtoPort(a, p, port) => Expression::Named(NamedExpression::Concat(vec![
            s(a.to_string()),
            s(p.nft_name()),
            Expression::Number(u32::from(*port)),
        ])),
    }
}

fn set_json(table: &str, name: &str, set: &Set) -> schema::Set<'static> {
    let addr = match set.family {
        Family::Ipv4 => SetType::Ipv4Addr,
        Family::Ipv6 => SetType::Ipv6Addr,
    };
    let set_type = match set.kind {
        SetKind::AddrProtoPort => SetTypeValue::Concatenated(Cow::Owned(vec![
            addr,
            SetType::InetProto,
            SetType::InetService,
        ])),
        _ => SetTypeValue::Single(addr),
    };
    let elem: Vec<Expression<'static>> = set.elements.iter().map(element_json).collect();
    schema::Set {
        family: NfFamily::INet,
        table: Cow::Owned(table.to_string()),
        name: Cow::Owned(name.to_string()),
        set_type,
        flags: (set.kind == SetKind::Interval).then(|| HashSet::from([SetFlag::Interval])),
        elem: (!elem.is_empty()).then(|| Cow::Owned(elem)),
        comment: Some(Cow::Owned(set.comment.clone())),
        ..Default::default()
    }
}

fn table_json(table: &str) -> NfListObject<'static> {
    NfListObject::Table(schema::Table {
        family: NfFamily::INet,
        name: Cow::Owned(table.to_string()),
        handle: None,
    })
}

/// The JSON batch that replaces fairlead's table atomically (add, delete, re-add, fill).
pub fn to_nftables_batch(ruleset: &Ruleset) -> Nftables<'static> {
    let t = &ruleset.table;
    let mut cmds = vec![
        NfCmd::Add(table_json(t)),
        NfCmd::Delete(table_json(t)),
        NfCmd::Add(table_json(t)),
    ];
    for (name, set) in &ruleset.sets {
        cmds.push(NfCmd::Add(NfListObject::Set(Box::new(set_json(
            t, name, set,
        )))));
    }
    for chain in &ruleset.chains {
        cmds.push(NfCmd::Add(NfListObject::Chain(schema::Chain {
            family: NfFamily::INet,
            table: Cow::Owned(t.clone()),
            name: Cow::Owned(chain.name.clone()),
            _type: chain.base.map(|_| NfChainType::Filter),
            hook: chain.base.map(|b| match b.hook {
                Hook::Forward => NfHook::Forward,
                Hook::Output => NfHook::Output,
            }),
            prio: chain.base.map(|b| b.priority),
            policy: chain.base.map(|b| match b.policy {
                ChainPolicy::Accept => NfChainPolicy::Accept,
                ChainPolicy::Drop => NfChainPolicy::Drop,
            }),
            ..Default::default()
        })));
    }
    for chain in &ruleset.chains {
        for rule in &chain.rules {
            let mut expr: Vec<Statement<'static>> = rule.matches.iter().map(match_json).collect();
            expr.extend(action_json(&rule.action));
            cmds.push(NfCmd::Add(NfListObject::Rule(schema::Rule {
                family: NfFamily::INet,
                table: Cow::Owned(t.clone()),
                chain: Cow::Owned(chain.name.clone()),
                expr: Cow::Owned(expr),
                comment: rule.comment.clone().map(Cow::Owned),
                ..Default::default()
            })));
        }
    }
    Nftables {
        objects: Cow::Owned(cmds.into_iter().map(schema::NfObject::CmdObject).collect()),
    }
}

/// The JSON batch for a set-element delta: deletions first, then additions.
pub fn delta_to_nftables(table: &str, delta: &SetDelta) -> Nftables<'static> {
    let element = |name: &String, elems: &std::collections::BTreeSet<SetElement>| {
        NfListObject::Element(schema::Element {
            family: NfFamily::INet,
            table: Cow::Owned(table.to_string()),
            name: Cow::Owned(name.clone()),
            elem: Cow::Owned(elems.iter().map(element_json).collect()),
        })
    };
    let mut cmds = Vec::new();
    for (name, elems) in &delta.removed {
        cmds.push(NfCmd::Delete(element(name, elems)));
    }
    for (name, elems) in &delta.added {
        cmds.push(NfCmd::Add(element(name, elems)));
    }
    Nftables {
        objects: Cow::Owned(cmds.into_iter().map(schema::NfObject::CmdObject).collect()),
    }
}
