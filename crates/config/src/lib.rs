//! The madmail configuration language.
//!
//! It reads maddy 0.9.4's language exactly as maddy does (the shared conformance corpus is the
//! judge), so an existing maddy.conf means the same thing here: tokens, quoting and comments,
//! blocks, line continuation, snippets, `import`, `$(macros)` and `{env:VAR}`. Beyond maddy it
//! reports every error as `FILE:LINE:COL: message` with the source line, and `import` also takes
//! a directory or a glob.
//!
//! This crate knows nothing of modules or directive meanings: it turns text into a tree of
//! [`Node`]s and back ([`dump`]). Interpreting the tree is `madmail-module`'s job.

pub mod dump;
mod env;
mod error;
mod lexer;
mod node;
mod parser;
mod source;

pub use error::Error;
pub use node::{Arg, Node};
pub use parser::{Environment, parse_file, parse_str};
pub use source::{Pos, SourceFile};
