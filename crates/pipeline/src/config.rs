//! Reading pipeline directives into a tree of routing blocks, with maddy's rules: every
//! sender/recipient combination must have an explicit outcome, and a final decision
//! (`deliver_to`, `reject`) never stands beside `source`/`destination` rules.

use std::sync::Arc;

use madmail_config::{Arg, Error, Node, Pos};
use madmail_module::delivery::{DeliveryError, DeliveryTarget};
use madmail_module::modify::Modifier;
use madmail_module::table::Table;
use madmail_module::{Ctx, Errors};

use crate::address::Rule;

pub(crate) enum Action {
    /// Only valid while a block still has rules or a reroute to decide.
    None,
    Reject(DeliveryError),
    Deliver(Vec<Arc<dyn DeliveryTarget>>),
}

pub(crate) struct RouteBlock {
    pub modifiers: Vec<Arc<dyn Modifier>>,
    pub source_in: Vec<(Arc<dyn Table>, Arc<RouteBlock>)>,
    pub sources: Vec<(Vec<Rule>, Arc<RouteBlock>)>,
    pub default_source: Option<Arc<RouteBlock>>,
    pub destination_in: Vec<(Arc<dyn Table>, Arc<RouteBlock>)>,
    pub destinations: Vec<(Vec<Rule>, Arc<RouteBlock>)>,
    pub default_destination: Option<Arc<RouteBlock>>,
    pub reroute: Option<Arc<RouteBlock>>,
    pub action: Action,
}

impl RouteBlock {
    pub fn has_source_rules(&self) -> bool {
        !self.sources.is_empty() || !self.source_in.is_empty() || self.default_source.is_some()
    }

    pub fn has_destination_rules(&self) -> bool {
        !self.destinations.is_empty()
            || !self.destination_in.is_empty()
            || self.default_destination.is_some()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// The pipeline itself or a `reroute` block: everything is allowed.
    Top,
    Source,
    Destination,
}

/// The default `reject`: a policy refusal.
fn default_reject() -> DeliveryError {
    DeliveryError::new(554, "5.7.0", "message is rejected due to policy reasons")
}

/// A child of a `modify { }` or `check { }` block names a module: turn `replace_rcpt file x`
/// into a directive whose first argument is the module, as inline definitions are read.
pub(crate) fn as_inline(node: &Node) -> Node {
    let mut args = Vec::with_capacity(node.args.len() + 1);
    args.push(Arg {
        value: node.name.clone(),
        pos: node.pos.clone(),
    });
    args.extend(node.args.iter().cloned());
    Node {
        name: node.name.clone(),
        args,
        children: node.children.clone(),
        pos: node.pos.clone(),
    }
}

pub(crate) fn parse(
    owner_pos: &Pos,
    nodes: &[&Node],
    level: Level,
    ctx: &mut Ctx<'_>,
    errors: &mut Errors,
) -> RouteBlock {
    let mut block = RouteBlock {
        modifiers: Vec::new(),
        source_in: Vec::new(),
        sources: Vec::new(),
        default_source: None,
        destination_in: Vec::new(),
        destinations: Vec::new(),
        default_destination: None,
        reroute: None,
        action: Action::None,
    };
    let mut deliver_to: Vec<Arc<dyn DeliveryTarget>> = Vec::new();
    let mut reject: Option<(DeliveryError, Pos)> = None;
    let mut first_final: Option<Pos> = None;
    let mut first_rule: Option<Pos> = None;
    let mut seen_dest_rules: Vec<(Rule, Pos)> = Vec::new();
    let mut seen_source_rules: Vec<(Rule, Pos)> = Vec::new();

    for node in nodes {
        let name = node.name.as_str();
        let allowed = match name {
            "source" | "source_in" | "default_source" => level == Level::Top,
            "destination" | "destination_in" | "default_destination" => level != Level::Destination,
            "check" | "modify" | "deliver_to" | "reject" | "reroute" => true,
            _ => {
                errors.push(Error::at(&node.pos, format!("unknown directive {name}")));
                continue;
            }
        };
        if !allowed {
            let place = if level == Level::Source {
                "a source block"
            } else {
                "a destination block"
            };
            errors.push(Error::at(
                &node.pos,
                format!("{name} can't be used inside {place}"),
            ));
            continue;
        }
        match name {
            "check" => {
                // No checks exist yet: resolving them reports "not implemented yet" (or an
                // unknown name) precisely.
                if let Some(children) = &node.children {
                    for child in children {
                        if let Err(e) = ctx.instance_from(&as_inline(child), 0, "check") {
                            errors.extend(e);
                        }
                    }
                } else if let Err(e) = ctx.instance_from(node, 0, "check") {
                    errors.extend(e);
                }
            }
            "modify" => {
                let result = match &node.children {
                    Some(children) => children
                        .iter()
                        .map(|c| ctx.module_from::<dyn Modifier>(&as_inline(c), 0, "modify"))
                        .collect::<Vec<_>>(),
                    None => vec![ctx.module_from::<dyn Modifier>(node, 0, "modify")],
                };
                for r in result {
                    match r {
                        Ok(m) => block.modifiers.push(m),
                        Err(e) => errors.extend(e),
                    }
                }
            }
            "deliver_to" => {
                first_final.get_or_insert_with(|| node.pos.clone());
                match ctx.module_from::<dyn DeliveryTarget>(node, 0, "target") {
                    Ok(t) => deliver_to.push(t),
                    Err(e) => errors.extend(e),
                }
            }
            "reject" => {
                first_final.get_or_insert_with(|| node.pos.clone());
                match parse_reject(node) {
                    Ok(e) => {
                        if let Some((_, first)) = &reject {
                            errors.push(Error::at(
                                &node.pos,
                                format!("duplicate reject (first at {first})"),
                            ));
                        } else {
                            reject = Some((e, node.pos.clone()));
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            "reroute" => {
                first_final.get_or_insert_with(|| node.pos.clone());
                let Some(children) = &node.children else {
                    errors.push(Error::at(&node.pos, "reroute needs a block"));
                    continue;
                };
                if block.reroute.is_some() {
                    errors.push(Error::at(&node.pos, "duplicate reroute"));
                    continue;
                }
                let inner: Vec<&Node> = children.iter().collect();
                let rr = parse(&node.pos, &inner, Level::Top, ctx, errors);
                block.reroute = Some(Arc::new(rr));
            }
            "source"
            | "destination"
            | "source_in"
            | "destination_in"
            | "default_source"
            | "default_destination" => {
                first_rule.get_or_insert_with(|| node.pos.clone());
                let Some(children) = &node.children else {
                    errors.push(Error::at(&node.pos, format!("{name} needs a block")));
                    continue;
                };
                let inner_level = if name.contains("source") {
                    Level::Source
                } else {
                    Level::Destination
                };
                let inner: Vec<&Node> = children.iter().collect();
                let sub = Arc::new(parse(&node.pos, &inner, inner_level, ctx, errors));
                match name {
                    "source" | "destination" => {
                        if node.args.is_empty() {
                            errors.push(Error::at(
                                &node.pos,
                                format!("{name} needs at least one rule (a domain or an address)"),
                            ));
                            continue;
                        }
                        let seen = if name == "source" {
                            &mut seen_source_rules
                        } else {
                            &mut seen_dest_rules
                        };
                        let mut rules = Vec::new();
                        for arg in &node.args {
                            let rule = Rule::parse(&arg.value);
                            if let Some((_, first)) = seen.iter().find(|(r, _)| *r == rule) {
                                errors.push(Error::at(
                                    &arg.pos,
                                    format!("rule {} is already used at {first}", arg.value),
                                ));
                                continue;
                            }
                            seen.push((rule.clone(), arg.pos.clone()));
                            rules.push(rule);
                        }
                        if name == "source" {
                            block.sources.push((rules, sub))
                        } else {
                            block.destinations.push((rules, sub))
                        }
                    }
                    "source_in" | "destination_in" => {
                        // The table is given inline without a block (the block is the rule's).
                        let head = Node {
                            children: None,
                            ..(*node).clone()
                        };
                        match ctx.module_from::<dyn Table>(&head, 0, "table") {
                            Ok(table) => {
                                if name == "source_in" {
                                    block.source_in.push((table, sub))
                                } else {
                                    block.destination_in.push((table, sub))
                                }
                            }
                            Err(e) => errors.extend(e),
                        }
                    }
                    _ => {
                        if !node.args.is_empty() {
                            errors.push(Error::at(
                                &node.args[0].pos,
                                format!("{name} takes no arguments"),
                            ));
                        }
                        let slot = if name == "default_source" {
                            &mut block.default_source
                        } else {
                            &mut block.default_destination
                        };
                        if slot.is_some() {
                            errors.push(Error::at(&node.pos, format!("duplicate {name}")));
                        } else {
                            *slot = Some(sub);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // Consistency: one kind of decision per block, and an explicit outcome for everything.
    if let (Some(final_pos), Some(rule_pos)) = (&first_final, &first_rule) {
        errors.push(Error::at(
            final_pos,
            format!("deliver_to, reject and reroute can't stand beside source/destination rules (rules start at {rule_pos})"),
        ));
    }
    if !deliver_to.is_empty() && reject.is_some() {
        errors.push(Error::at(
            owner_pos,
            "deliver_to and reject can't be used in the same block",
        ));
    }
    if block.reroute.is_some() && (!deliver_to.is_empty() || reject.is_some()) {
        errors.push(Error::at(
            owner_pos,
            "reroute can't be combined with deliver_to or reject in the same block",
        ));
    }
    if (!block.sources.is_empty() || !block.source_in.is_empty()) && block.default_source.is_none()
    {
        errors.push(Error::at(
            owner_pos,
            "source rules need a default_source block for other senders",
        ));
    }
    if (!block.destinations.is_empty() || !block.destination_in.is_empty())
        && block.default_destination.is_none()
    {
        errors.push(Error::at(
            owner_pos,
            "destination rules need a default_destination block for other recipients",
        ));
    }
    if first_final.is_none() && first_rule.is_none() {
        errors.push(Error::at(
            owner_pos,
            "no deliver_to, reject or routing rules: messages would go nowhere",
        ));
    }
    block.action = match (reject, deliver_to.is_empty()) {
        (Some((e, _)), _) => Action::Reject(e),
        (None, false) => Action::Deliver(deliver_to),
        (None, true) => Action::None,
    };
    block
}

/// `reject [CODE [ENHANCED [TEXT]]]`.
fn parse_reject(node: &Node) -> Result<DeliveryError, Error> {
    let mut e = default_reject();
    if node.children.is_some() {
        return Err(Error::at(&node.pos, "reject does not take a block"));
    }
    if let Some(code) = node.args.first() {
        let n: u16 = code
            .value
            .parse()
            .map_err(|_| Error::at(&code.pos, format!("invalid SMTP code {:?}", code.value)))?;
        if !(400..600).contains(&n) {
            return Err(Error::at(&code.pos, "reject needs a 4xx or 5xx code"));
        }
        e.code = n;
        e.enhanced = format!("{}.0.0", n / 100);
    }
    if let Some(enh) = node.args.get(1) {
        let parts: Vec<&str> = enh.value.split('.').collect();
        let valid = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()))
            && parts[0] == (e.code / 100).to_string();
        if !valid {
            return Err(Error::at(
                &enh.pos,
                format!(
                    "invalid enhanced status code {:?} for {}",
                    enh.value, e.code
                ),
            ));
        }
        e.enhanced = enh.value.clone();
    }
    if let Some(text) = node.args.get(2) {
        if text.value.contains(['\r', '\n']) {
            return Err(Error::at(&text.pos, "the reject text must be one line"));
        }
        e.message = text.value.clone();
    }
    if let Some(extra) = node.args.get(3) {
        return Err(Error::at(
            &extra.pos,
            "reject takes at most 3 arguments (quote the text)",
        ));
    }
    Ok(e)
}
