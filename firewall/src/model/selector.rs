//! Kubernetes label selectors (matchLabels + matchExpressions), validated once, then matched.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::ModelError;

/// One requirement of a selector; all must hold.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A validated label selector in canonical form (requirements and values sorted), so equal
/// selectors compare equal. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// Validates a `LabelSelector` the way the API server does for the fields we use.
    pub fn parse(sel: &LabelSelector) -> Result<Selector, ModelError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for expr in sel.match_expressions.iter().flatten() {
            let mut values = expr.values.clone().unwrap_or_default();
            values.sort();
            values.dedup();
            let key = expr.key.clone();
            let req = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(ModelError::Selector(format!(
                        "operator {} on key {key} needs values",
                        expr.operator
                    )));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(ModelError::Selector(format!(
                        "operator {} on key {key} takes no values",
                        expr.operator
                    )));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(ModelError::Selector(format!(
                        "unknown operator {other:?} on key {key}"
                    )));
                }
            };
            requirements.push(req);
        }
        requirements.sort();
        requirements.dedup();
        Ok(Selector { requirements })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            // NotIn matches objects without the key, as upstream labels.Selector does.
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// kubectl's selector syntax (`pod=a,ns in (x,y),!team`); `any` for the empty selector.
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("any");
        }
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::In(k, vs) if vs.len() == 1 => format!("{k}={}", vs[0]),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|v| v.to_string()).collect())
            },
        }
    }

    #[test]
    fn operators() {
        let sel = |e| {
            Selector::parse(&LabelSelector {
                match_expressions: Some(vec![e]),
                ..Default::default()
            })
            .unwrap()
        };
        let a = labels(&[("pod", "a")]);
        let none = labels(&[]);
        assert!(sel(expr("pod", "In", &["a", "b"])).matches(&a));
        assert!(!sel(expr("pod", "In", &["b"])).matches(&a));
        assert!(!sel(expr("pod", "In", &["a"])).matches(&none));
        assert!(!sel(expr("pod", "NotIn", &["a"])).matches(&a));
        assert!(sel(expr("pod", "NotIn", &["b"])).matches(&a));
        assert!(sel(expr("pod", "NotIn", &["a"])).matches(&none));
        assert!(sel(expr("pod", "Exists", &[])).matches(&a));
        assert!(!sel(expr("pod", "Exists", &[])).matches(&none));
        assert!(sel(expr("pod", "DoesNotExist", &[])).matches(&none));
        assert!(!sel(expr("pod", "DoesNotExist", &[])).matches(&a));
        assert!(Selector::default().matches(&none));
    }

    #[test]
    fn invalid_selectors_are_errors() {
        for e in [
            expr("pod", "In", &[]),
            expr("pod", "Exists", &["a"]),
            expr("pod", "Gt", &["1"]),
        ] {
            let r = Selector::parse(&LabelSelector {
                match_expressions: Some(vec![e.clone()]),
                ..Default::default()
            });
            assert!(matches!(r, Err(ModelError::Selector(_))), "{e:?}: {r:?}");
        }
    }
}
