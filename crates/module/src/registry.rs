//! Modules by name.
//!
//! The binary registers every module compiled into it; optional modules (DNS providers behind
//! cargo features) are declared as such when left out, so a config that names one gets told
//! which feature to enable instead of "unknown module".

use std::collections::BTreeMap;

use madmail_config::Node;

use crate::{Built, Ctx, Errors};

/// How a module's top-level blocks are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `module [instance [aliases...]] { ... }`: named, built when first referenced.
    Named,
    /// `endpoint ADDR... { ... }`: anonymous, takes listen addresses, built in file order.
    Endpoint,
}

/// What a module's constructor receives.
#[derive(Debug, Clone, Copy)]
pub struct Definition<'a> {
    /// Full module name, e.g. `tls.loader.acme`.
    pub module: &'static str,
    /// The instance name for a named top-level block; `None` for inline definitions and
    /// endpoints.
    pub instance: Option<&'a str>,
    /// For a top-level named block, its aliases; otherwise empty.
    pub aliases: &'a [String],
    /// The arguments after the module name of an inline definition (`deliver_to smtp ARGS`),
    /// or an endpoint's listen addresses. Empty for top-level named blocks.
    pub args: &'a [madmail_config::Arg],
    /// The directive the definition comes from; its children are the module's block.
    pub node: &'a Node,
}

impl Definition<'_> {
    /// A name for logs and errors: the instance name, or `module ARGS` for anonymous ones.
    pub fn label(&self) -> String {
        match self.instance {
            Some(name) => name.to_owned(),
            None if self.args.is_empty() => self.module.to_owned(),
            None => format!(
                "{} {}",
                self.module,
                self.args
                    .iter()
                    .map(|a| a.value.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }
    }
}

pub type BuildFn = fn(&Definition<'_>, &mut Ctx<'_>) -> Result<Built, Errors>;

#[derive(Clone, Copy)]
pub struct ModuleSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub build: BuildFn,
    /// One line for `madmail version` and the docs.
    pub summary: &'static str,
}

impl std::fmt::Debug for ModuleSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleSpec")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish()
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    modules: BTreeMap<&'static str, ModuleSpec>,
    /// Optional modules left out of this build, with the cargo feature that adds them.
    not_compiled: BTreeMap<&'static str, &'static str>,
}

/// Why a module name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    NotCompiled {
        module: &'static str,
        feature: &'static str,
    },
    NotImplemented {
        module: &'static str,
    },
    Unknown {
        suggestion: Option<String>,
    },
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn register(&mut self, spec: ModuleSpec) {
        self.not_compiled.remove(spec.name);
        self.modules.insert(spec.name, spec);
    }

    /// Declares an optional module that this build left out.
    pub fn not_compiled(&mut self, name: &'static str, feature: &'static str) {
        if !self.modules.contains_key(name) {
            self.not_compiled.insert(name, feature);
        }
    }

    pub fn get(&self, name: &str) -> Option<&ModuleSpec> {
        self.modules.get(name)
    }

    pub fn modules(&self) -> impl Iterator<Item = &ModuleSpec> {
        self.modules.values()
    }

    /// Whether `name` is a module this build has, lacks by choice, or maddy has.
    pub fn is_known_name(&self, name: &str) -> bool {
        self.modules.contains_key(name)
            || self.not_compiled.contains_key(name)
            || crate::maddy::MODULES.contains(&name)
    }

    /// Explains why `names` (tried in order) are not registered.
    pub fn missing(&self, names: &[&str]) -> Missing {
        for name in names {
            if let Some((&module, &feature)) = self.not_compiled.get_key_value(*name) {
                return Missing::NotCompiled { module, feature };
            }
        }
        for name in names {
            if let Some(&module) = crate::maddy::MODULES.iter().find(|m| *m == name) {
                return Missing::NotImplemented { module };
            }
        }
        let candidates = self
            .modules
            .keys()
            .chain(self.not_compiled.keys())
            .copied()
            .chain(crate::maddy::MODULES.iter().copied());
        let suggestion = names
            .iter()
            .flat_map(|n| crate::suggest::closest(n, candidates.clone()))
            .next();
        Missing::Unknown { suggestion }
    }

    /// The error message for a module name that did not resolve; `shown` is what the config
    /// said, `tried` the full names looked up.
    pub fn missing_message(&self, shown: &str, tried: &[&str]) -> String {
        match self.missing(tried) {
            Missing::NotCompiled { module, feature } => {
                format!(
                    "{module} is not compiled into this build; rebuild with --features {feature}"
                )
            }
            Missing::NotImplemented { module } => {
                format!("{module} is a maddy module that madmail does not implement yet")
            }
            Missing::Unknown { suggestion } => {
                let looked = if tried.len() > 1 || tried.first() != Some(&shown) {
                    format!(" (looked for {})", tried.join(", "))
                } else {
                    String::new()
                };
                match suggestion {
                    Some(s) => format!("unknown module {shown}{looked}; did you mean {s}?"),
                    None => format!("unknown module {shown}{looked}"),
                }
            }
        }
    }
}
