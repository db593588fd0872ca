//! Decoding a module's block, like maddy's `config.Map`.
//!
//! A module asks for each directive it knows, with its type, and whether it is required, has a
//! default or inherits the global directive of the same name. Every problem is recorded rather
//! than returned at once, so `config check` lists all of them. [`Block::finish`] then reports
//! directives nobody asked for (with a "did you mean").
//!
//! ```ignore
//! let mut block = Block::new(def.node, ctx.globals());
//! let hostname = block.string("hostname").inherit().required();
//! let debug = block.flag("debug").inherit().default(false);
//! let timeout = block.duration("read_timeout").default(Duration::from_secs(600));
//! block.finish()?;
//! ```

use std::sync::Arc;
use std::time::Duration;

use madmail_config::{Error, Node};

use crate::globals::Globals;
use crate::values::{self, ListenAddr};
use crate::{Errors, suggest};

type Parse<'b, T> = Box<dyn FnMut(&Node) -> Result<T, Errors> + 'b>;

pub struct Block<'a> {
    node: &'a Node,
    globals: Option<Arc<Globals>>,
    /// Children not yet claimed by a `Block` method.
    unclaimed: Vec<Option<&'a Node>>,
    known: Vec<String>,
    errors: Errors,
}

impl<'a> Block<'a> {
    /// Decodes `node`'s block; `globals` enables `.inherit()`.
    pub fn new(node: &'a Node, globals: Arc<Globals>) -> Block<'a> {
        Block {
            node,
            globals: Some(globals),
            unclaimed: node.children().iter().map(Some).collect(),
            known: Vec::new(),
            errors: Errors::new(),
        }
    }

    /// Decodes a block that has no global directives to inherit (e.g. a sub-block).
    pub fn without_globals(node: &'a Node) -> Block<'a> {
        Block {
            node,
            globals: None,
            unclaimed: node.children().iter().map(Some).collect(),
            known: Vec::new(),
            errors: Errors::new(),
        }
    }

    /// The directive this block belongs to.
    pub fn node(&self) -> &'a Node {
        self.node
    }

    /// Records an error found while decoding (e.g. by a custom check).
    pub fn error(&mut self, error: Error) {
        self.errors.push(error);
    }

    pub fn errors(&mut self, errors: Errors) {
        self.errors.extend(errors);
    }

    /// Claims every occurrence of `name`, for repeatable directives.
    pub fn all(&mut self, name: &str) -> Vec<&'a Node> {
        self.known.push(name.to_owned());
        self.unclaimed
            .iter_mut()
            .filter(|slot| slot.is_some_and(|n| n.name == name))
            .filter_map(Option::take)
            .collect()
    }

    /// Claims the single occurrence of `name`; a second one is an error.
    fn one(&mut self, name: &str) -> Option<&'a Node> {
        let mut found = self.all(name).into_iter();
        let first = found.next()?;
        for dup in found {
            self.errors.push(Error::at(
                &dup.pos,
                format!("duplicate directive {name} (first at {})", first.pos),
            ));
        }
        Some(first)
    }

    /// A directive whose value `parse` decodes from its node (it may also resolve module
    /// references through a captured `Ctx`).
    pub fn custom<'b, T, E: Into<Errors>>(
        &'b mut self,
        name: &'b str,
        mut parse: impl FnMut(&Node) -> Result<T, E> + 'b,
    ) -> Field<'a, 'b, T> {
        Field {
            block: self,
            name,
            parse: Box::new(move |n| parse(n).map_err(Into::into)),
            inherit: false,
        }
    }

    /// `name` alone or `name yes|no|true|false|on|off|1|0`.
    pub fn flag<'b>(&'b mut self, name: &'b str) -> Field<'a, 'b, bool> {
        self.custom(name, |n| no_block(n).and_then(|()| values::flag(n)))
    }

    /// `name VALUE`.
    pub fn string<'b>(&'b mut self, name: &'b str) -> Field<'a, 'b, String> {
        self.custom(name, |n| single(n).map(str::to_owned))
    }

    /// `name VALUE...` (at least one value).
    pub fn strings<'b>(&'b mut self, name: &'b str) -> Field<'a, 'b, Vec<String>> {
        self.custom(name, |n| {
            no_block(n)?;
            if n.args.is_empty() {
                return Err(Error::at(
                    &n.pos,
                    format!("{} needs at least one value", n.name),
                ));
            }
            Ok(n.args.iter().map(|a| a.value.clone()).collect())
        })
    }

    /// `name VALUE` where VALUE is one of `allowed`.
    pub fn choice<'b>(
        &'b mut self,
        name: &'b str,
        allowed: &'b [&'b str],
    ) -> Field<'a, 'b, String> {
        self.custom(name, move |n| {
            let v = single(n)?;
            if allowed.contains(&v) {
                Ok(v.to_owned())
            } else {
                Err(Error::at(
                    n.arg_pos(0),
                    format!(
                        "{} must be one of {}, not {v:?}",
                        n.name,
                        allowed.join(", ")
                    ),
                ))
            }
        })
    }

    /// `name N`, any integer type.
    pub fn int<'b, T: std::str::FromStr + 'b>(&'b mut self, name: &'b str) -> Field<'a, 'b, T>
    where
        T::Err: std::fmt::Display,
    {
        self.custom(name, |n| {
            let v = single(n)?;
            v.parse::<T>().map_err(|e| {
                Error::at(
                    n.arg_pos(0),
                    format!("{}: invalid number {v:?}: {e}", n.name),
                )
            })
        })
    }

    /// `name DURATION` (Go syntax such as `1h30m`, `500ms`, plus `d` for days).
    pub fn duration<'b>(&'b mut self, name: &'b str) -> Field<'a, 'b, Duration> {
        self.custom(name, |n| {
            no_block(n)?;
            let joined: String = n.args.iter().map(|a| a.value.as_str()).collect();
            values::duration(&joined)
                .map_err(|e| Error::at(n.arg_pos(0), format!("{}: {e}", n.name)))
        })
    }

    /// `name SIZE` (bytes, or with a `K`, `M` or `G` suffix, powers of 1024).
    pub fn data_size<'b>(&'b mut self, name: &'b str) -> Field<'a, 'b, u64> {
        self.custom(name, |n| {
            no_block(n)?;
            let joined: String = n.args.iter().map(|a| a.value.as_str()).collect();
            values::data_size(&joined)
                .map_err(|e| Error::at(n.arg_pos(0), format!("{}: {e}", n.name)))
        })
    }

    /// `name ADDR` with ADDR `tcp://host:port`, `tls://host:port` or `unix://path`.
    pub fn listen_addr<'b>(&'b mut self, name: &'b str) -> Field<'a, 'b, ListenAddr> {
        self.custom(name, |n| {
            let v = single(n)?;
            values::listen_addr(v).map_err(|e| Error::at(n.arg_pos(0), format!("{}: {e}", n.name)))
        })
    }

    /// Ends decoding, handing back every directive nobody claimed instead of reporting them
    /// (an endpoint passes those to its message pipeline). Returns them with the errors
    /// recorded so far.
    pub fn finish_with_rest(mut self) -> (Vec<&'a Node>, Errors) {
        let rest = self.unclaimed.iter_mut().filter_map(Option::take).collect();
        (rest, std::mem::take(&mut self.errors))
    }

    /// Ends decoding: every directive nobody claimed is an error. Returns all errors recorded.
    pub fn finish(mut self) -> Result<(), Errors> {
        for node in self.unclaimed.iter().flatten() {
            let hint = suggest::closest(&node.name, self.known.iter().map(String::as_str))
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_default();
            let message = if self.known.is_empty() {
                format!(
                    "unknown directive {}: {} takes no directives",
                    node.name, self.node.name
                )
            } else {
                format!("unknown directive {}{hint}", node.name)
            };
            self.errors.push(Error::at(&node.pos, message));
        }
        std::mem::take(&mut self.errors).into_result(())
    }
}

/// One directive being decoded; finish it with `required`, `default` or `optional`.
pub struct Field<'a, 'b, T> {
    block: &'b mut Block<'a>,
    name: &'b str,
    parse: Parse<'b, T>,
    inherit: bool,
}

impl<T> Field<'_, '_, T> {
    /// When the block lacks the directive, use the global directive of the same name.
    pub fn inherit(mut self) -> Self {
        self.inherit = true;
        self
    }

    /// The value, or `None` when the directive is absent (also from the globals when
    /// inherited) or invalid (the error is recorded).
    pub fn optional(mut self) -> Option<T> {
        let node = self.block.one(self.name).or_else(|| {
            if self.inherit {
                self.block
                    .globals
                    .as_deref()
                    .and_then(|g| g.node(self.name))
            } else {
                None
            }
        })?;
        match (self.parse)(node) {
            Ok(v) => Some(v),
            Err(e) => {
                self.block.errors.extend(e);
                None
            }
        }
    }

    /// The value; when absent, an error saying the directive is required.
    pub fn required(self) -> Option<T> {
        let present = self
            .block
            .unclaimed
            .iter()
            .flatten()
            .any(|n| n.name == self.name)
            || (self.inherit
                && self
                    .block
                    .globals
                    .as_deref()
                    .and_then(|g| g.node(self.name))
                    .is_some());
        if !present {
            self.block.known.push(self.name.to_owned());
            let block = self.block.node;
            let message = format!("{}: directive {} is required", block.name, self.name);
            self.block.errors.push(Error::at(&block.pos, message));
            return None;
        }
        self.optional()
    }

    /// The value, or `default` when the directive is absent. (When it is present but invalid,
    /// the error is recorded and `default` is returned so decoding can go on.)
    pub fn default(self, default: T) -> T {
        self.optional().unwrap_or(default)
    }
}

/// The directive must not have a block.
pub fn no_block(n: &Node) -> Result<(), Error> {
    match &n.children {
        Some(_) => Err(Error::at(
            &n.pos,
            format!("{} does not take a block", n.name),
        )),
        None => Ok(()),
    }
}

/// The directive's only argument.
pub fn single(n: &Node) -> Result<&str, Error> {
    no_block(n)?;
    match n.args.as_slice() {
        [one] => Ok(&one.value),
        [] => Err(Error::at(&n.pos, format!("{} needs a value", n.name))),
        [_, extra, ..] => Err(Error::at(
            &extra.pos,
            format!("{} takes exactly one value", n.name),
        )),
    }
}
