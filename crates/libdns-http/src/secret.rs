//! Credentials that stay out of logs.

use std::fmt;

use madmail_config::{Error, Node};
use madmail_module::decode::single;

/// A credential from the configuration (API token, key, password). `Debug` and `Display` print
/// `<redacted>`, so it cannot leak through a log line or an error message by accident; the value
/// is only reachable through [`Secret::expose`], where a request is built.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that puts it into a request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Decodes a directive with one non-empty argument. Errors never quote the value.
    pub fn from_node(node: &Node) -> Result<Secret, Error> {
        let value = single(node)?;
        if value.trim().is_empty() {
            return Err(Error::at(
                node.arg_pos(0),
                format!("{} is empty", node.name),
            ));
        }
        Ok(Secret(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
        assert_eq!(secret.expose(), "hunter2");
    }
}
