//! A set of configuration errors: building a configuration reports every error it finds, not
//! just the first.

use madmail_config::{Error, Pos};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Errors(Vec<Error>);

impl Errors {
    pub fn new() -> Errors {
        Errors(Vec::new())
    }

    pub fn at(pos: &Pos, message: impl Into<String>) -> Errors {
        Errors(vec![Error::at(pos, message)])
    }

    pub fn push(&mut self, error: Error) {
        // The same directive can be decoded twice (a global inherited by several modules).
        if !self.0.contains(&error) {
            self.0.push(error);
        }
    }

    pub fn extend(&mut self, other: Errors) {
        for e in other.0 {
            self.push(e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Error> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, Errors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Errors sorted by file and position, for reporting.
    pub fn into_sorted(mut self) -> Vec<Error> {
        self.0.sort_by(|a, b| {
            let key = |e: &Error| e.pos().map(|p| (p.file().to_owned(), p.line(), p.col()));
            key(a).cmp(&key(b))
        });
        self.0
    }
}

impl From<Error> for Errors {
    fn from(e: Error) -> Errors {
        Errors(vec![e])
    }
}

impl IntoIterator for Errors {
    type Item = Error;
    type IntoIter = std::vec::IntoIter<Error>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}
