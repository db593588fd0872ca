//! Errors that point at a place in the configuration.

use std::fmt;

use crate::Pos;

/// A configuration error: a message and, almost always, the place it is about.
///
/// `Display` gives the one-line form `FILE:LINE:COL: message`; [`Error::render`] adds the
/// offending source line with a caret under the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pos: Option<Pos>,
    message: String,
}

impl Error {
    pub fn new(pos: Option<Pos>, message: impl Into<String>) -> Error {
        Error {
            pos,
            message: message.into(),
        }
    }

    pub fn at(pos: &Pos, message: impl Into<String>) -> Error {
        Error::new(Some(pos.clone()), message)
    }

    pub fn pos(&self) -> Option<&Pos> {
        self.pos.as_ref()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The one-line form followed by the source line and a caret, as compilers print them.
    pub fn render(&self) -> String {
        let mut out = self.to_string();
        if let Some(pos) = &self.pos
            && let Some(line) = pos.line_text()
        {
            let gutter = pos.line().to_string();
            let pad = " ".repeat(gutter.len());
            // Columns count characters; reproduce tabs so the caret lines up in a terminal.
            let lead: String = line
                .chars()
                .take(pos.col().saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n{pad} |\n{gutter} | {line}\n{pad} | {lead}^"));
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pos {
            Some(pos) => write!(f, "{pos}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}
