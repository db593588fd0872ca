//! Building a configuration: top-level blocks become definitions, endpoints are built in file
//! order, named instances when first referenced (`&name`), inline definitions where they stand.

use std::collections::HashMap;
use std::sync::Arc;

use madmail_config::{Node, Pos};

use crate::caps::{Capabilities, Capability};
use crate::globals::{GLOBAL_DIRECTIVES, Globals};
use crate::lifecycle::Lifecycle;
use crate::registry::{Definition, Kind, Registry};
use crate::{Errors, suggest};

/// What a module's constructor returns.
#[derive(Default)]
pub struct Built {
    pub caps: Capabilities,
    pub lifecycle: Option<Arc<dyn Lifecycle>>,
}

impl Built {
    pub fn new(caps: Capabilities) -> Built {
        Built {
            caps,
            lifecycle: None,
        }
    }

    pub fn with_lifecycle(mut self, lifecycle: Arc<dyn Lifecycle>) -> Built {
        self.lifecycle = Some(lifecycle);
        self
    }
}

/// A built module instance.
pub struct Instance {
    pub module: &'static str,
    /// Instance name, or `module ARGS` for endpoints and inline definitions.
    pub label: String,
    /// The aliases of a named top-level block.
    pub aliases: Vec<String>,
    pub pos: Pos,
    pub caps: Capabilities,
    pub lifecycle: Option<Arc<dyn Lifecycle>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("module", &self.module)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

enum State {
    Pending,
    Building,
    Built(Arc<Instance>),
    /// Its errors are already reported; references to it add nothing.
    Failed,
}

struct NamedBlock {
    module: &'static str,
    name: String,
    aliases: Vec<String>,
    node: Node,
    state: State,
}

/// The configuration being built. Module constructors use it to resolve references.
pub struct Ctx<'r> {
    registry: &'r Registry,
    globals: Arc<Globals>,
    named: Vec<NamedBlock>,
    /// Instance names and aliases to indexes into `named`.
    names: HashMap<String, usize>,
    /// Names being built, outermost first: a reference to one of them is a cycle.
    building: Vec<String>,
    /// Every instance in the order its construction finished: the start order.
    order: Vec<Arc<Instance>>,
    /// Inline definitions already built, by the place of their module name: one place in the
    /// configuration is one instance, however often it is read (a global `tls` inherited by
    /// every endpoint must not become one certificate manager per endpoint).
    inline: HashMap<(std::path::PathBuf, u32, u32), Arc<Instance>>,
}

/// A fully built configuration.
pub struct Loaded {
    pub globals: Arc<Globals>,
    /// All instances (named, inline and endpoints) in initialisation order.
    pub instances: Vec<Arc<Instance>>,
    /// The endpoints, in file order.
    pub endpoints: Vec<Arc<Instance>>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("instances", &self.instances)
            .finish_non_exhaustive()
    }
}

/// Builds every module of a parsed configuration, reporting all errors found.
pub fn load(registry: &Registry, nodes: &[Node]) -> Result<Loaded, Errors> {
    let mut errors = Errors::new();
    let mut global_nodes = Vec::new();
    let mut endpoint_nodes = Vec::new();
    let mut ctx = Ctx {
        registry,
        globals: Arc::new(Globals::default()),
        named: Vec::new(),
        names: HashMap::new(),
        building: Vec::new(),
        order: Vec::new(),
        inline: HashMap::new(),
    };

    // Pass 1: sort top-level directives into globals, endpoints and named blocks, so that any
    // reference (also from a global such as `tls &name`) can see blocks defined later.
    for node in nodes {
        if GLOBAL_DIRECTIVES.contains(&node.name.as_str()) {
            global_nodes.push(node);
            continue;
        }
        if crate::maddy::GLOBALS.contains(&node.name.as_str()) {
            errors.push(madmail_config::Error::at(
                &node.pos,
                format!(
                    "{} is a maddy global directive that madmail does not implement yet",
                    node.name
                ),
            ));
            continue;
        }
        let Some(spec) = registry.get(&node.name) else {
            let message = if node.children.is_none() && !registry.is_known_name(&node.name) {
                let known = GLOBAL_DIRECTIVES
                    .iter()
                    .copied()
                    .chain(registry.modules().map(|m| m.name));
                match suggest::closest(&node.name, known) {
                    Some(s) => format!("unknown directive {}; did you mean {s}?", node.name),
                    None => {
                        format!(
                            "unknown directive {} (not a global directive nor a module)",
                            node.name
                        )
                    }
                }
            } else {
                registry.missing_message(&node.name, &[&node.name])
            };
            errors.push(madmail_config::Error::at(&node.pos, message));
            continue;
        };
        match spec.kind {
            Kind::Endpoint => endpoint_nodes.push((spec.name, node)),
            Kind::Named => {
                let values = node.arg_values();
                let name = values.first().map_or(spec.name, |n| n).to_owned();
                let aliases: Vec<String> = values.iter().skip(1).map(|s| (*s).to_owned()).collect();
                let index = ctx.named.len();
                let mut valid = true;
                for (i, n) in std::iter::once(&name).chain(&aliases).enumerate() {
                    let pos = node.arg_pos(i);
                    if n.is_empty() || n.starts_with('&') {
                        errors.push(madmail_config::Error::at(
                            pos,
                            format!("invalid instance name {n:?}"),
                        ));
                        valid = false;
                        continue;
                    }
                    if let Some(&other) = ctx.names.get(n) {
                        let first = &ctx.named[other].node.pos;
                        errors.push(madmail_config::Error::at(
                            pos,
                            format!("duplicate instance name {n} (first defined at {first})"),
                        ));
                        valid = false;
                        continue;
                    }
                    ctx.names.insert(n.clone(), index);
                }
                if !valid {
                    // Reported already; an "unused" error on top would only add noise.
                    ctx.names.retain(|_, i| *i != index);
                    continue;
                }
                ctx.named.push(NamedBlock {
                    module: spec.name,
                    name,
                    aliases,
                    node: node.clone(),
                    state: State::Pending,
                });
            }
        }
    }

    // Pass 2: globals, then endpoints in file order; they pull in what they reference.
    match Globals::decode(&global_nodes) {
        Ok(globals) => ctx.globals = Arc::new(globals),
        Err(e) => errors.extend(e),
    }
    // Resolving the global `tls` may build a loader, which inherits globals such as
    // `hostname`: only now are they known. It also marks a `tls &name` block as used and
    // reports a bad reference once, at the global directive.
    for tls in global_nodes.iter().filter(|n| n.name == "tls") {
        if let Err(e) = crate::globals::check_tls_references(tls, &mut ctx) {
            errors.extend(e);
        }
    }
    let mut endpoints = Vec::new();
    for (module, node) in endpoint_nodes {
        let def = Definition {
            module,
            instance: None,
            aliases: &[],
            args: &node.args,
            node,
        };
        match ctx.build(&def) {
            Ok(instance) => endpoints.push(instance),
            Err(e) => errors.extend(e),
        }
    }

    // Pass 3: a named block nothing refers to is almost always a mistake. It is still built,
    // so that `config check` reports its own errors too.
    for index in 0..ctx.named.len() {
        if !matches!(ctx.named[index].state, State::Pending) {
            continue;
        }
        let (name, pos, module) = (
            ctx.named[index].name.clone(),
            ctx.named[index].node.pos.clone(),
            ctx.named[index].module,
        );
        if let Err(e) = ctx.instance(&name, &pos) {
            errors.extend(e);
        }
        errors.push(madmail_config::Error::at(
            &pos,
            format!(
                "{module} {name} is defined but never used; reference it as &{name} or remove it"
            ),
        ));
    }

    errors.into_result(Loaded {
        globals: ctx.globals,
        instances: ctx.order,
        endpoints,
    })
}

impl<'r> Ctx<'r> {
    pub fn registry(&self) -> &'r Registry {
        self.registry
    }

    /// The global directives (for inheritance, see [`crate::Block`]).
    pub fn globals(&self) -> Arc<Globals> {
        self.globals.clone()
    }

    /// The instance called `name` (an instance name or alias), built now if it was not yet.
    pub fn instance(&mut self, name: &str, pos: &Pos) -> Result<Arc<Instance>, Errors> {
        let Some(&index) = self.names.get(name) else {
            let known = self.names.keys().map(String::as_str);
            let hint = suggest::closest(name, known)
                .map(|s| format!("; did you mean &{s}?"))
                .unwrap_or_default();
            return Err(Errors::at(pos, format!("unknown instance &{name}{hint}")));
        };
        match &self.named[index].state {
            State::Built(instance) => return Ok(instance.clone()),
            State::Failed => return Err(Errors::new()),
            State::Building => {
                let start = self
                    .building
                    .iter()
                    .position(|n| *n == self.named[index].name)
                    .unwrap_or(0);
                let mut path: Vec<String> = self.building[start..].to_vec();
                path.push(self.named[index].name.clone());
                return Err(Errors::at(
                    pos,
                    format!("reference cycle: {}", path.join(" -> ")),
                ));
            }
            State::Pending => {}
        }

        let block = &mut self.named[index];
        block.state = State::Building;
        let (module, instance_name, aliases, node) = (
            block.module,
            block.name.clone(),
            block.aliases.clone(),
            block.node.clone(),
        );
        self.building.push(instance_name.clone());
        let def = Definition {
            module,
            instance: Some(&instance_name),
            aliases: &aliases,
            args: &[],
            node: &node,
        };
        let result = self.build(&def);
        self.building.pop();
        self.named[index].state = match &result {
            Ok(instance) => State::Built(instance.clone()),
            Err(_) => State::Failed,
        };
        result
    }

    /// A reference `&name` (without the `&`) used as a `T`.
    pub fn reference<T: ?Sized + Capability>(
        &mut self,
        name: &str,
        pos: &Pos,
    ) -> Result<Arc<T>, Errors> {
        let instance = self.instance(name, pos)?;
        instance.caps.get::<T>().ok_or_else(|| {
            Errors::at(
                pos,
                format!(
                    "&{name} is a {} module, which can't be used as {}",
                    instance.module,
                    T::DESCRIPTION
                ),
            )
        })
    }

    /// The module a directive names, starting at argument `first`, used as a `T`: either
    /// `&name`, or an inline definition `MODULE [ARGS...] [{ block }]` looked up as
    /// `namespace.MODULE`, then `MODULE`. The directive's block is the inline module's block.
    pub fn module_from<T: ?Sized + Capability>(
        &mut self,
        node: &Node,
        first: usize,
        namespace: &str,
    ) -> Result<Arc<T>, Errors> {
        let instance = self.instance_from(node, first, namespace)?;
        instance.caps.get::<T>().ok_or_else(|| {
            let what = match node.args.get(first) {
                Some(a) if a.value.starts_with('&') => {
                    format!("{} is a {} module", a.value, instance.module)
                }
                _ => instance.module.to_owned(),
            };
            Errors::at(
                node.arg_pos(first),
                format!("{what}, which can't be used as {}", T::DESCRIPTION),
            )
        })
    }

    /// Like [`Ctx::module_from`], whatever the instance offers.
    pub fn instance_from(
        &mut self,
        node: &Node,
        first: usize,
        namespace: &str,
    ) -> Result<Arc<Instance>, Errors> {
        let Some(head) = node.args.get(first) else {
            return Err(Errors::at(
                &node.pos,
                format!(
                    "{} needs a module: &name or an inline definition",
                    node.name
                ),
            ));
        };
        if let Some(name) = head.value.strip_prefix('&') {
            if node.args.len() > first + 1 || node.children.is_some() {
                return Err(Errors::at(
                    &head.pos,
                    "a reference takes no arguments or block",
                ));
            }
            return self.instance(name, &head.pos);
        }
        let qualified = format!("{namespace}.{}", head.value);
        let tried: Vec<&str> = if namespace.is_empty() {
            vec![&head.value]
        } else {
            vec![&qualified, &head.value]
        };
        let Some(spec) = tried.iter().find_map(|n| self.registry.get(n)) else {
            return Err(Errors::at(
                &head.pos,
                self.registry.missing_message(&head.value, &tried),
            ));
        };
        if spec.kind == Kind::Endpoint {
            return Err(Errors::at(
                &head.pos,
                format!("{} is an endpoint and can't be defined inline", spec.name),
            ));
        }
        let key = (head.pos.file().to_owned(), head.pos.line(), head.pos.col());
        if let Some(instance) = self.inline.get(&key) {
            return Ok(instance.clone());
        }
        let def = Definition {
            module: spec.name,
            instance: None,
            aliases: &[],
            args: &node.args[first + 1..],
            node,
        };
        let instance = self.build(&def)?;
        self.inline.insert(key, instance.clone());
        Ok(instance)
    }

    fn build(&mut self, def: &Definition<'_>) -> Result<Arc<Instance>, Errors> {
        let spec = self.registry.get(def.module).copied().ok_or_else(|| {
            Errors::at(
                &def.node.pos,
                self.registry.missing_message(def.module, &[def.module]),
            )
        })?;
        let built = (spec.build)(def, self)?;
        let instance = Arc::new(Instance {
            module: spec.name,
            label: def.label(),
            aliases: def.aliases.to_vec(),
            pos: def.node.pos.clone(),
            caps: built.caps,
            lifecycle: built.lifecycle,
        });
        self.order.push(instance.clone());
        Ok(instance)
    }
}
