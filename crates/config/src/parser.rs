//! From tokens to a tree, then snippets, imports and macros expanded: maddy 0.9.4's semantics.
//!
//! The structure follows maddy's parser closely on purpose: its quirks (a `}` closing a block
//! at the end of a child's line, macros expanded once per enclosing block, per-file macro
//! scopes) are part of the language operators' configs were written against. Where maddy
//! would exhaust memory or stack on hostile input, explicit limits turn that into an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lexer::{self, Token};
use crate::{Arg, Error, Node, Pos, SourceFile};

/// maddy's nesting limit (its counter starts at -1 for the file's top level).
const MAX_NESTING: i32 = 255;
/// Real recursion depth limit. maddy's nesting counter can be driven down by a `}` at the end
/// of a macro line while the parser recurses deeper; Go grows its stack, we stop here instead.
const MAX_RECURSION: u32 = 1024;
/// maddy's limit on import expansion passes and depth.
const MAX_IMPORT_DEPTH: u32 = 255;
/// Upper bound on directives produced by expansion: a snippet that imports itself twice
/// doubles at every pass, which maddy would follow until memory runs out.
const MAX_EXPANDED_NODES: usize = 200_000;
/// Upper bound on the arguments of one directive after macro expansion, and on their bytes.
const MAX_MACRO_ARGS: usize = 65_536;
const MAX_MACRO_BYTES: usize = 1 << 20;

/// Where `{env:NAME}` values come from.
#[derive(Debug, Clone, Default)]
pub enum Environment {
    /// The process environment (what `madmail run` uses).
    #[default]
    Process,
    /// Exactly these variables (tests, and the conformance suite's empty environment).
    Map(HashMap<String, String>),
}

impl Environment {
    pub fn empty() -> Environment {
        Environment::Map(HashMap::new())
    }

    pub(crate) fn snapshot(&self) -> HashMap<String, String> {
        match self {
            Environment::Process => std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
            Environment::Map(map) => map.clone(),
        }
    }
}

/// Reads and fully expands the configuration file at `path`.
pub fn parse_file(path: &Path, env: &Environment) -> Result<Vec<Node>, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::new(None, format!("{}: cannot read: {e}", path.display())))?;
    parse_bytes(path, &bytes, env)
}

/// Parses configuration text as if it were the file `path` (imports resolve next to it).
pub fn parse_str(path: &Path, text: &str, env: &Environment) -> Result<Vec<Node>, Error> {
    parse_bytes(path, text.as_bytes(), env)
}

fn parse_bytes(path: &Path, bytes: &[u8], env: &Environment) -> Result<Vec<Node>, Error> {
    let mut shared = Shared {
        import_stack: vec![canonical(path)],
        expanded_nodes: 0,
    };
    let file = SourceFile::new(path.to_owned(), lexer::decode(bytes));
    let parsed = read_tree(file, 0, &mut shared)?;
    Ok(crate::env::expand(parsed.nodes, &env.snapshot()))
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// State that lives across all files of one parse.
struct Shared {
    /// Files being read, outermost first, to report import cycles by name.
    import_stack: Vec<PathBuf>,
    expanded_nodes: usize,
}

struct ParsedFile {
    nodes: Vec<Node>,
    snippets: HashMap<String, Vec<Node>>,
    macros: HashMap<String, Vec<String>>,
}

/// A node as `read_node` returns it, before `read_nodes` decides what it is.
struct RawNode {
    node: Node,
    snippet: bool,
    macro_decl: bool,
}

/// The per-file parser: a token cursor with maddy's line-aware movements, plus the file's
/// snippets and macros (each imported file gets its own; snippets flow back to the importer).
struct FileParser {
    file: Arc<SourceFile>,
    tokens: Vec<Token>,
    /// Line of each token's first character, and of its last (quoted tokens span lines).
    lines: Vec<(u32, u32)>,
    cursor: isize,
    nesting: i32,
    recursion: u32,
    snippets: HashMap<String, Vec<Node>>,
    macros: HashMap<String, Vec<String>>,
}

fn read_tree(file: Arc<SourceFile>, depth: u32, shared: &mut Shared) -> Result<ParsedFile, Error> {
    let tokens = lexer::tokenize(file.text());
    let lines = tokens
        .iter()
        .map(|t| {
            let (line, _) = file.line_col(t.offset);
            (line, line + t.text.matches('\n').count() as u32)
        })
        .collect();
    let mut p = FileParser {
        file,
        tokens,
        lines,
        cursor: -1,
        nesting: -1,
        recursion: 0,
        snippets: HashMap::new(),
        macros: HashMap::new(),
    };
    let nodes = p.read_nodes()?;
    if p.nesting > 0 {
        return Err(p.err("unexpected end of file: a block is not closed with }"));
    }
    let nodes = p.expand_imports(nodes, depth, shared)?;
    Ok(ParsedFile {
        nodes,
        snippets: p.snippets,
        macros: p.macros,
    })
}

impl FileParser {
    // --- cursor movements (maddy's Dispenser) ---

    fn next(&mut self) -> bool {
        if self.cursor + 1 < self.tokens.len() as isize {
            self.cursor += 1;
            true
        } else {
            false
        }
    }

    /// Moves to the next token if it starts on the line where the current one ends.
    fn next_arg(&mut self) -> bool {
        self.next_if(|cur_end, next_start| cur_end == next_start)
    }

    /// Moves to the next token if it starts on a later line than the current one ends.
    fn next_line(&mut self) -> bool {
        self.next_if(|cur_end, next_start| cur_end < next_start)
    }

    fn next_if(&mut self, cond: impl Fn(u32, u32) -> bool) -> bool {
        if self.cursor < 0 {
            self.cursor += 1;
            return true;
        }
        let cur = self.cursor as usize;
        match (self.lines.get(cur), self.lines.get(cur + 1)) {
            (Some(&(_, cur_end)), Some(&(next_start, _))) if cond(cur_end, next_start) => {
                self.cursor += 1;
                true
            }
            _ => false,
        }
    }

    fn current(&self) -> Option<&Token> {
        usize::try_from(self.cursor)
            .ok()
            .and_then(|i| self.tokens.get(i))
    }

    fn val(&self) -> &str {
        self.current().map_or("", |t| t.text.as_str())
    }

    fn pos(&self) -> Pos {
        Pos::at_offset(&self.file, self.current().map_or(0, |t| t.offset))
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::at(&self.pos(), msg)
    }

    // --- structure ---

    /// Reads the directive whose name is the current token. Afterwards the cursor is on the
    /// directive's last token (its last argument, or the `}` of its block).
    fn read_node(&mut self) -> Result<RawNode, Error> {
        let pos = self.pos();
        if self.val() == "{" {
            return Err(self.err("unexpected '{': expected a directive name (a block's '{' must be on the line of its directive)"));
        }
        let mut name = self.val().to_owned();
        let mut snippet = false;
        if name.starts_with('(') && name.ends_with(')') {
            name = name[1..name.len() - 1].to_owned();
            snippet = true;
        }

        let mut args: Vec<Arg> = Vec::new();
        let mut children = None;
        let mut continue_on_newline = false;
        loop {
            while self.next_arg() || (continue_on_newline && self.next_line()) {
                continue_on_newline = false;
                if self.val() == "{" {
                    children = Some(self.read_nodes()?);
                    break;
                }
                args.push(Arg {
                    value: self.val().to_owned(),
                    pos: self.pos(),
                });
            }
            // A lone `\` as the last argument continues the directive on the next line.
            if args.last().is_some_and(|a| a.value == "\\") {
                args.pop();
                continue_on_newline = true;
                continue;
            }
            break;
        }

        let mut node = Node {
            name,
            args,
            children,
            pos,
        };
        let mut macro_decl = false;
        if let Some(rest) = node.name.strip_prefix("$(") {
            let Some(macro_name) = rest.strip_suffix(')') else {
                return Err(self.err("macro name must end with )"));
            };
            let macro_name = macro_name.to_owned();
            if node.args.len() < 2 {
                return Err(self.err("a macro declaration needs = and at least one value"));
            }
            if node.args[0].value != "=" {
                return Err(self.err("missing = in macro declaration"));
            }
            node.name = macro_name;
            node.args.remove(0);
            macro_decl = true;
        }
        if !macro_decl && !snippet {
            validate_name(&node)?;
        }
        Ok(RawNode {
            node,
            snippet,
            macro_decl,
        })
    }

    /// Reads the directives of a block whose `{` is the current token (or of the whole file,
    /// when the cursor is before the first token). Afterwards the cursor is on the block's `}`.
    fn read_nodes(&mut self) -> Result<Vec<Node>, Error> {
        let mut res = Vec::new();
        if self.nesting > MAX_NESTING || self.recursion >= MAX_RECURSION {
            return Err(self.err("nesting limit reached"));
        }
        self.nesting += 1;
        self.recursion += 1;

        let mut require_newline = false;
        loop {
            if require_newline {
                if !self.next_line() {
                    if !self.next() {
                        break;
                    }
                    return Err(self.err("a newline is required after a closing brace"));
                }
            } else if !self.next() {
                break;
            }

            if self.val() == "}" {
                self.nesting -= 1;
                if self.nesting < 0 {
                    return Err(self.err("unexpected }"));
                }
                break;
            }

            let RawNode {
                mut node,
                snippet,
                macro_decl,
            } = self.read_node()?;
            require_newline = true;

            // `name args }`: a `}` at the end of a child's line closes the block.
            let mut closes_block = false;
            if node.args.last().is_some_and(|a| a.value == "}") {
                self.nesting -= 1;
                if self.nesting < 0 {
                    return Err(self.err("unexpected }"));
                }
                node.args.pop();
                closes_block = true;
            }

            if macro_decl {
                if self.nesting != 0 {
                    return Err(self.err("macro declarations are only allowed at top level"));
                }
                // A declaration may use earlier macros.
                self.expand_macros(&mut node)?;
                let values = node.args.into_iter().map(|a| a.value).collect();
                self.macros.insert(node.name, values);
                continue;
            }
            if snippet {
                if self.nesting != 0 {
                    return Err(self.err("snippet declarations are only allowed at top level"));
                }
                if !node.args.is_empty() {
                    return Err(self.err("snippet declarations can't have arguments"));
                }
                self.snippets
                    .insert(node.name, node.children.unwrap_or_default());
                continue;
            }

            self.expand_macros(&mut node)?;
            res.push(node);
            if closes_block {
                break;
            }
        }
        self.recursion -= 1;
        Ok(res)
    }

    // --- macros ---

    fn expand_macros(&self, node: &mut Node) -> Result<(), Error> {
        if node.name.starts_with("$(") && node.name.ends_with(')') {
            return Err(self.err("a macro can't be used as a directive name"));
        }
        let mut new_args = Vec::with_capacity(node.args.len());
        let mut bytes = 0;
        for arg in node.args.drain(..) {
            let whole = arg
                .value
                .strip_prefix("$(")
                .and_then(|r| r.strip_suffix(')'));
            match whole {
                Some(macro_name) => {
                    // An undefined macro expands to no arguments at all.
                    for value in self.macros.get(macro_name).into_iter().flatten() {
                        bytes += value.len();
                        new_args.push(Arg {
                            value: value.clone(),
                            pos: arg.pos.clone(),
                        });
                    }
                }
                None if arg.value.contains("$(") && arg.value.contains(')') => {
                    let value = self.expand_inline_macros(&arg.value)?;
                    bytes += value.len();
                    new_args.push(Arg {
                        value,
                        pos: arg.pos,
                    });
                }
                None => {
                    bytes += arg.value.len();
                    new_args.push(arg);
                }
            }
            if new_args.len() > MAX_MACRO_ARGS || bytes > MAX_MACRO_BYTES {
                return Err(Error::at(&node.pos, "macro expansion too large"));
            }
        }
        node.args = new_args;
        if let Some(children) = &mut node.children {
            for child in children {
                self.expand_macros(child)?;
            }
        }
        Ok(())
    }

    /// `$(name)` inside a longer string: only single-value macros can be used there.
    fn expand_inline_macros(&self, arg: &str) -> Result<String, Error> {
        let mut out = arg.to_owned();
        for name in inline_macro_names(arg) {
            let values = self.macros.get(name);
            if values.is_some_and(|v| v.len() > 1) {
                return Err(self.err(format!(
                    "macro $({name}) has several values and can't be used inside a string"
                )));
            }
            let value = values.and_then(|v| v.first()).map_or("", String::as_str);
            out = out.replace(&format!("$({name})"), value);
            if out.len() > MAX_MACRO_BYTES {
                return Err(self.err("macro expansion too large"));
            }
        }
        Ok(out)
    }

    // --- imports ---

    fn expand_imports(
        &mut self,
        children: Vec<Node>,
        depth: u32,
        shared: &mut Shared,
    ) -> Result<Vec<Node>, Error> {
        let mut out = Vec::with_capacity(children.len());
        let mut had_imports = false;
        for mut child in children {
            if let Some(grandchildren) = child.children.take() {
                child.children = Some(self.expand_imports(grandchildren, depth + 1, shared)?);
            }
            if child.name != "import" {
                out.push(child);
                continue;
            }
            if depth > MAX_IMPORT_DEPTH {
                return Err(Error::at(
                    &child.pos,
                    "import expansion limit reached (an import or snippet that includes itself?)",
                ));
            }
            had_imports = true;
            if child.args.len() != 1 {
                return Err(Error::at(&child.pos, "import takes exactly one argument"));
            }
            let subtree = self.resolve_import(&child, depth, shared)?;
            shared.expanded_nodes += subtree.len();
            if shared.expanded_nodes > MAX_EXPANDED_NODES {
                return Err(Error::at(
                    &child.pos,
                    "imports expand to too many directives",
                ));
            }
            out.extend(subtree);
        }
        // Snippets just spliced in may contain imports of their own.
        if had_imports {
            return self.expand_imports(out, depth + 1, shared);
        }
        Ok(out)
    }

    /// `import X`: the snippet X, else the file X next to this one (madmail also accepts a
    /// directory, whose `*.conf` files are read in name order, and a glob), else `X.conf`.
    fn resolve_import(
        &mut self,
        node: &Node,
        depth: u32,
        shared: &mut Shared,
    ) -> Result<Vec<Node>, Error> {
        let name = node.args[0].value.as_str();
        if let Some(subtree) = self.snippets.get(name) {
            return Ok(subtree.clone());
        }
        let base = self.file.path().parent().unwrap_or(Path::new(""));
        let target = base.join(name);

        let files = if name.contains(['*', '?', '[']) {
            glob_files(&target).map_err(|e| Error::at(&node.pos, format!("import {name}: {e}")))?
        } else if target.is_dir() {
            let pattern = target.join("*.conf");
            glob_files(&pattern).map_err(|e| Error::at(&node.pos, format!("import {name}: {e}")))?
        } else if target.exists() {
            vec![target]
        } else {
            let mut with_ext = target.into_os_string();
            with_ext.push(".conf");
            let with_ext = PathBuf::from(with_ext);
            if !with_ext.exists() {
                return Err(Error::at(
                    &node.pos,
                    format!(
                        "unknown import: {name} (no snippet, file or {name}.conf by that name)"
                    ),
                ));
            }
            vec![with_ext]
        };

        let mut nodes = Vec::new();
        for file in files {
            nodes.extend(self.import_file(node, &file, depth, shared)?);
        }
        Ok(nodes)
    }

    fn import_file(
        &mut self,
        node: &Node,
        path: &Path,
        depth: u32,
        shared: &mut Shared,
    ) -> Result<Vec<Node>, Error> {
        let key = canonical(path);
        if shared.import_stack.contains(&key) {
            let chain: Vec<String> = shared
                .import_stack
                .iter()
                .chain(std::iter::once(&key))
                .map(|p| p.display().to_string())
                .collect();
            return Err(Error::at(
                &node.pos,
                format!("import cycle: {}", chain.join(" -> ")),
            ));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| Error::at(&node.pos, format!("import {}: {e}", path.display())))?;
        let file = SourceFile::new(path.to_owned(), lexer::decode(&bytes));
        shared.import_stack.push(key);
        let parsed = read_tree(file, depth + 1, shared);
        shared.import_stack.pop();
        let parsed = parsed?;
        self.snippets.extend(parsed.snippets);
        self.macros.extend(parsed.macros);
        Ok(parsed.nodes)
    }
}

fn glob_files(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let pattern = pattern.to_str().ok_or("path is not valid UTF-8")?;
    let mut files: Vec<PathBuf> = glob::glob(pattern)
        .map_err(|e| format!("bad pattern: {e}"))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Names used as `$(name)` inside a string, as maddy's `\$\(([^\$]+)\)` finds them: the
/// leftmost `$(`, then the longest run without `$` that ends in `)`.
fn inline_macro_names(s: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut i = 0;
    while let Some(found) = s[i..].find("$(") {
        let start = i + found + 2;
        let run_end = s[start..].find('$').map_or(s.len(), |e| start + e);
        match s[start..run_end].rfind(')') {
            Some(close) if close > 0 => {
                names.push(&s[start..start + close]);
                i = start + close + 1;
            }
            _ => i = i + found + 1,
        }
    }
    names
}

/// Directive names: letters, digits, `.`, `-` and `_`, not starting with a digit (Unicode
/// categories L and Nd, as Go's `unicode.IsLetter` and `unicode.IsDigit`).
fn validate_name(node: &Node) -> Result<(), Error> {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    let is_letter = |c: char| {
        matches!(
            get_general_category(c),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
        )
    };
    let is_digit = |c: char| get_general_category(c) == G::DecimalNumber;
    let name = &node.name;
    let Some(first) = name.chars().next() else {
        return Err(Error::at(&node.pos, "empty directive name"));
    };
    if is_digit(first) {
        return Err(Error::at(
            &node.pos,
            format!("directive name can't start with a digit: {name}"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(is_letter(c) || is_digit(c) || matches!(c, '.' | '-' | '_')))
    {
        return Err(Error::at(
            &node.pos,
            format!("character not allowed in directive name: {bad} (in {name:?})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_macro_regex_semantics() {
        assert_eq!(inline_macro_names("$(a)-$(b)"), ["a", "b"]);
        assert_eq!(inline_macro_names("x$(a)y)z"), ["a)y"]);
        assert_eq!(inline_macro_names("$()$(b)"), ["b"]);
        assert!(inline_macro_names("$(a$b)").is_empty());
    }
}
