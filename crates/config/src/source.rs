//! Source files and positions inside them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One configuration file as it was read, kept so that any later error (from the parser or from
/// a module validating its block) can quote the offending line.
pub struct SourceFile {
    path: PathBuf,
    text: String,
    /// Byte offsets at which each line starts; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> Arc<Self> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Arc::new(SourceFile {
            path,
            text,
            line_starts,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (u32, u32) {
        let line_idx = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line_idx];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line_idx as u32 + 1, col as u32 + 1)
    }

    /// The text of a 1-based line, without its line terminator.
    pub fn line_text(&self, line: u32) -> Option<&str> {
        let idx = (line as usize).checked_sub(1)?;
        let start = *self.line_starts.get(idx)?;
        let end = self
            .line_starts
            .get(idx + 1)
            .map_or(self.text.len(), |e| e - 1);
        self.text.get(start..end).map(|l| l.trim_end_matches('\r'))
    }
}

impl fmt::Debug for SourceFile {
    // The text is deliberately left out: it may hold secrets and is large.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A place in a configuration file: the file, a 1-based line and a 1-based column.
#[derive(Clone)]
pub struct Pos {
    file: Arc<SourceFile>,
    line: u32,
    col: u32,
}

impl Pos {
    pub(crate) fn at_offset(file: &Arc<SourceFile>, offset: usize) -> Pos {
        let (line, col) = file.line_col(offset);
        Pos {
            file: file.clone(),
            line,
            col,
        }
    }

    /// A position for things that do not come from a file (built-in defaults, tests).
    pub fn synthetic(name: &str) -> Pos {
        Pos {
            file: SourceFile::new(PathBuf::from(name), String::new()),
            line: 0,
            col: 0,
        }
    }

    pub fn file(&self) -> &Path {
        self.file.path()
    }

    pub fn source(&self) -> &Arc<SourceFile> {
        &self.file
    }

    pub fn line(&self) -> u32 {
        self.line
    }

    pub fn col(&self) -> u32 {
        self.col
    }

    /// The source line this position points into, if there is one.
    pub fn line_text(&self) -> Option<&str> {
        self.file.line_text(self.line)
    }
}

impl PartialEq for Pos {
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line && self.col == other.col && self.file.path == other.file.path
    }
}

impl Eq for Pos {}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.path.display())
        } else {
            write!(f, "{}:{}:{}", self.file.path.display(), self.line, self.col)
        }
    }
}

impl fmt::Debug for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
