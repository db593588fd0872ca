//! The configuration tree.

use std::fmt;
use std::ops::Deref;

use crate::Pos;

/// One directive: `name arg0 arg1 { children }`.
///
/// `children` is `None` for a directive without a block and `Some(vec![])` for `name {}`, a
/// distinction maddy makes and modules rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub args: Vec<Arg>,
    pub children: Option<Vec<Node>>,
    /// Where the name token is.
    pub pos: Pos,
}

/// An argument with the place it came from (for a macro expansion, the place of the macro use).
#[derive(Clone, PartialEq, Eq)]
pub struct Arg {
    pub value: String,
    pub pos: Pos,
}

impl Node {
    /// The argument values as string slices.
    pub fn arg_values(&self) -> Vec<&str> {
        self.args.iter().map(|a| a.value.as_str()).collect()
    }

    /// The block's children, or an empty slice when there is no block.
    pub fn children(&self) -> &[Node] {
        self.children.as_deref().unwrap_or(&[])
    }

    /// The position of argument `i`, or of the name when there is no such argument.
    pub fn arg_pos(&self, i: usize) -> &Pos {
        self.args.get(i).map_or(&self.pos, |a| &a.pos)
    }
}

impl Deref for Arg {
    type Target = str;
    fn deref(&self) -> &str {
        &self.value
    }
}

impl PartialEq<str> for Arg {
    fn eq(&self, other: &str) -> bool {
        self.value == other
    }
}

impl PartialEq<&str> for Arg {
    fn eq(&self, other: &&str) -> bool {
        self.value == *other
    }
}

impl fmt::Debug for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.value, f)
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}
