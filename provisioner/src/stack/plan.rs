//! Plan: a pure function of (desired, existing) → one step per resource
//! (create, update in place, replace, delete or keep) with the changed
//! properties and the monthly cost before and after. No AWS call here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::definition::Definition;
use super::progress::Progress;
use super::spec::{Existing, Kind, Props, Resource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    Keep,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Keep => " ",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub key: String,
    pub before: String,
    pub after: String,
    /// True when AWS cannot change this property in place.
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub component: String,
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    /// The components that must be done before this step starts (none for a
    /// deletion: leftovers go after everything else, in destroy order).
    pub depends_on: Vec<String>,
    pub changes: Vec<Change>,
    /// Why a difference is not acted on (e.g. storage that cannot shrink).
    pub notes: Vec<String>,
    pub monthly_cost_before: f64,
    pub monthly_cost_after: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stack: String,
    pub phase: u8,
    pub region: String,
    pub steps: Vec<Step>,
    pub monthly_cost_before: f64,
    pub monthly_cost_after: f64,
    pub prices_date: String,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.steps.iter().any(|s| s.action != Action::Keep)
    }

    pub fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }
}

pub fn plan(
    definition: &Definition,
    stack: &str,
    phase: u8,
    region: &str,
    desired: &[Resource],
    existing: &BTreeMap<String, Existing>,
) -> Plan {
    let mut steps = Vec::new();
    for resource in desired {
        let home = resource.kind.home();
        let current = existing.get(&resource.component);
        let mut changes = Vec::new();
        let mut notes = Vec::new();
        let mut effective: Props = resource.props.clone();
        if let Some(current) = current {
            for (key, wanted) in &resource.props {
                // A property discovery cannot read back was set at creation: not compared.
                let Some(have) = current.props.get(key) else {
                    continue;
                };
                if have == wanted {
                    continue;
                }
                if let Some(note) = home.accepted(key, wanted, have) {
                    notes.push(note);
                    effective.insert(key.clone(), have.clone());
                    continue;
                }
                changes.push(Change {
                    key: key.clone(),
                    before: have.clone(),
                    after: wanted.clone(),
                    forces_replacement: home.forces_replacement(key),
                });
            }
        }
        let action = match current {
            None => Action::Create,
            Some(_) if changes.iter().any(|c| c.forces_replacement) => Action::Replace,
            Some(_) if !changes.is_empty() => Action::Update,
            Some(_) => Action::Keep,
        };
        steps.push(Step {
            component: resource.component.clone(),
            kind: resource.kind,
            name: resource.name.clone(),
            action,
            depends_on: resource.depends_on.clone(),
            changes,
            notes,
            monthly_cost_before: current
                .map_or(0.0, |c| c.kind.home().monthly_cost(definition, &c.props)),
            monthly_cost_after: home.monthly_cost(definition, &effective),
        });
    }
    let wanted: BTreeSet<&str> = desired.iter().map(|r| r.component.as_str()).collect();
    let mut leftovers: Vec<&Existing> = existing
        .values()
        .filter(|e| !wanted.contains(e.component.as_str()))
        .collect();
    // What uses a resource goes before it.
    leftovers.sort_by_key(|e| std::cmp::Reverse(e.kind.creation_rank()));
    for current in leftovers {
        steps.push(Step {
            component: current.component.clone(),
            kind: current.kind,
            name: current.name.clone(),
            action: Action::Delete,
            depends_on: vec![],
            changes: vec![],
            notes: vec![],
            monthly_cost_before: current.kind.home().monthly_cost(definition, &current.props),
            monthly_cost_after: 0.0,
        });
    }
    Plan {
        stack: stack.to_owned(),
        phase,
        region: region.to_owned(),
        monthly_cost_before: steps.iter().map(|s| s.monthly_cost_before).sum(),
        monthly_cost_after: steps.iter().map(|s| s.monthly_cost_after).sum(),
        prices_date: definition.prices.date.clone(),
        steps,
    }
}

/// The plan as the terminal shows it: changed resources only, then totals.
pub fn render(plan: &Plan, progress: &Progress) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan for stack {} in {}: phase {}",
        plan.stack, plan.region, plan.phase
    );
    for step in plan
        .steps
        .iter()
        .filter(|s| s.action != Action::Keep || !s.notes.is_empty())
    {
        let cost = if step.monthly_cost_before == 0.0 && step.monthly_cost_after == 0.0 {
            String::new()
        } else {
            format!(
                "${:.2} → ${:.2}",
                step.monthly_cost_before, step.monthly_cost_after
            )
        };
        let row = format!(
            "{:>3} {:<28} {:<20} {:<36} {cost}",
            step.action.symbol(),
            step.component,
            step.kind.label(),
            step.name
        );
        let _ = writeln!(
            out,
            "{}",
            progress.paint(step.action.symbol(), row.trim_end())
        );
        for change in &step.changes {
            let forces = if change.forces_replacement {
                "  (forces replacement)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "        {}: {} → {}{forces}",
                change.key,
                shown(&change.before),
                shown(&change.after)
            );
        }
        for note in &step.notes {
            let _ = writeln!(out, "        note: {note}");
        }
    }
    let _ = writeln!(
        out,
        "{} to create, {} to update, {} to replace, {} to delete, {} unchanged.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete),
        plan.count(Action::Keep)
    );
    let _ = writeln!(
        out,
        "Monthly cost: ${:.2} → ${:.2} (us-east-1 on-demand prices of {}; `accunode cost --phase {}` itemises).",
        plan.monthly_cost_before, plan.monthly_cost_after, plan.prices_date, plan.phase
    );
    out
}

fn shown(value: &str) -> &str {
    if value.is_empty() {
        "(none)"
    } else if value.len() > 120 {
        "(long value changed)"
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::definition::BUILT_IN;
    use crate::stack::resources::desired;
    use crate::stack::spec::Inputs;

    fn inputs() -> Inputs<'static> {
        Inputs {
            stack: "accunode",
            region: "us-east-1",
            account: "123456789012",
            image_id: "ami-1",
            admin_cidr: None,
            certificate_arn: None,
        }
    }

    /// What discovery would report if every desired resource existed as desired.
    fn as_existing(resources: &[Resource]) -> BTreeMap<String, Existing> {
        resources
            .iter()
            .map(|r| {
                (
                    r.component.clone(),
                    Existing {
                        component: r.component.clone(),
                        kind: r.kind,
                        name: r.name.clone(),
                        id: format!("id-{}", r.component),
                        props: r.props.clone(),
                        attrs: BTreeMap::new(),
                        aliases: vec![],
                    },
                )
            })
            .collect()
    }

    #[test]
    fn from_nothing_everything_is_created_and_costs_add_up() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let phase = definition.phase(1).unwrap();
        let resources = desired(&definition, phase, &inputs(), &BTreeMap::new());
        let plan = plan(
            &definition,
            "accunode",
            1,
            "us-east-1",
            &resources,
            &BTreeMap::new(),
        );
        assert!(plan.steps.iter().all(|s| s.action == Action::Create));
        assert_eq!(plan.monthly_cost_before, 0.0);
        let items: f64 = plan.steps.iter().map(|s| s.monthly_cost_after).sum();
        assert!((plan.monthly_cost_after - items).abs() < 1e-9);
        // Components are unique and every dependency is a component of the stack.
        let components: BTreeSet<&str> = resources.iter().map(|r| r.component.as_str()).collect();
        assert_eq!(components.len(), resources.len());
        for r in &resources {
            for d in &r.depends_on {
                assert!(
                    components.contains(d.as_str()),
                    "{} depends on unknown {d}",
                    r.component
                );
            }
        }
    }

    #[test]
    fn the_same_state_plans_no_change_and_a_phase_change_updates_in_place() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let one = desired(
            &definition,
            definition.phase(1).unwrap(),
            &inputs(),
            &BTreeMap::new(),
        );
        let existing = as_existing(&one);
        let same = plan(&definition, "accunode", 1, "us-east-1", &one, &existing);
        assert!(!same.has_changes());

        let three = desired(
            &definition,
            definition.phase(3).unwrap(),
            &inputs(),
            &BTreeMap::new(),
        );
        let up = plan(&definition, "accunode", 3, "us-east-1", &three, &existing);
        let changed: BTreeSet<&str> = up
            .steps
            .iter()
            .filter(|s| s.action != Action::Keep)
            .map(|s| s.component.as_str())
            .collect();
        assert_eq!(
            changed,
            BTreeSet::from(["asg-api-blue", "asg-worker", "database", "redis"])
        );
        assert!(up.steps.iter().all(|s| s.action != Action::Replace));
        assert!(up.monthly_cost_after > up.monthly_cost_before);
    }

    #[test]
    fn storage_never_shrinks_and_leftovers_are_deleted() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let three = desired(
            &definition,
            definition.phase(3).unwrap(),
            &inputs(),
            &BTreeMap::new(),
        );
        let mut existing = as_existing(&three);
        existing.insert(
            "listener-https".into(),
            Existing {
                component: "listener-https".into(),
                kind: Kind::Listener,
                name: "accunode-https".into(),
                id: "arn".into(),
                props: Props::new(),
                attrs: Props::new(),
                aliases: vec![],
            },
        );
        let one = desired(
            &definition,
            definition.phase(1).unwrap(),
            &inputs(),
            &BTreeMap::new(),
        );
        let down = plan(&definition, "accunode", 1, "us-east-1", &one, &existing);
        let database = down
            .steps
            .iter()
            .find(|s| s.component == "database")
            .unwrap();
        assert_eq!(database.action, Action::Update);
        assert!(database.changes.iter().all(|c| c.key != "storage_gb"));
        assert!(
            database.notes[0].contains("cannot shrink"),
            "{:?}",
            database.notes
        );
        let https = down
            .steps
            .iter()
            .find(|s| s.component == "listener-https")
            .unwrap();
        assert_eq!(https.action, Action::Delete);
    }

    #[test]
    fn a_changed_cidr_forces_replacement() {
        let definition = Definition::parse(BUILT_IN).unwrap();
        let one = desired(
            &definition,
            definition.phase(1).unwrap(),
            &inputs(),
            &BTreeMap::new(),
        );
        let mut existing = as_existing(&one);
        existing
            .get_mut("subnet-public-a")
            .unwrap()
            .props
            .insert("cidr".into(), "10.0.9.0/24".into());
        let p = plan(&definition, "accunode", 1, "us-east-1", &one, &existing);
        let step = p
            .steps
            .iter()
            .find(|s| s.component == "subnet-public-a")
            .unwrap();
        assert_eq!(step.action, Action::Replace);
    }
}
