//! Set-element delta between two rulesets of the same structure (pod churn without rule churn).

use std::collections::{BTreeMap, BTreeSet};

use super::ruleset::{Ruleset, SetElement};

/// Elements to add to and delete from named sets, to turn one ruleset into another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetDelta {
    pub added: BTreeMap<String, BTreeSet<SetElement>>,
    pub removed: BTreeMap<String, BTreeSet<SetElement>>,
}

impl SetDelta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// Applies the delta to a ruleset of the same structure.
    pub fn apply(&self, ruleset: &mut Ruleset) {
        for (name, elems) in &self.removed {
            if let Some(set) = ruleset.sets.get_mut(name) {
                set.elements.retain(|e| !elems.contains(e));
            }
        }
        for (name, elems) in &self.added {
            if let Some(set) = ruleset.sets.get_mut(name) {
                set.elements.extend(elems.iter().copied());
            }
        }
    }
}

/// The two rulesets differ in more than set elements (tables, chains, rules or set declarations):
/// the whole table has to be replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ruleset structure changed: {0}")]
pub struct StructureChanged(pub String);

/// The element delta from `old` to `new`, or why it cannot be expressed as one.
pub fn set_delta(old: &Ruleset, new: &Ruleset) -> Result<SetDelta, StructureChanged> {
    if old.table != new.table {
        return Err(StructureChanged("table name".into()));
    }
    if old.chains != new.chains {
        return Err(StructureChanged("chains or rules".into()));
    }
    let old_names: BTreeSet<&String> = old.sets.keys().collect();
    let new_names: BTreeSet<&String> = new.sets.keys().collect();
    if old_names != new_names {
        return Err(StructureChanged("set names".into()));
    }
    let mut delta = SetDelta::default();
    for (name, o) in &old.sets {
        let n = &new.sets[name];
        if !o.same_declaration(n) {
            return Err(StructureChanged(format!("declaration of set {name}")));
        }
        let added: BTreeSet<SetElement> = n.elements.difference(&o.elements).copied().collect();
        let removed: BTreeSet<SetElement> = o.elements.difference(&n.elements).copied().collect();
        if !added.is_empty() {
            delta.added.insert(name.clone(), added);
        }
        if !removed.is_empty() {
            delta.removed.insert(name.clone(), removed);
        }
    }
    Ok(delta)
}
