//! Tokenizer, with maddy 0.9.4's exact rules (its lexer descends from Caddy v1's):
//!
//! - tokens are separated by Unicode whitespace; `\r` outside quotes is dropped, not a separator;
//! - `#` at the start of a token comments out the rest of the line; `#` inside a bare token ends
//!   the token and skips only up to the next whitespace (`foo#bar baz` gives `foo`, `baz`);
//! - `"` opens a quoted token only at the start of a token; the token runs to the next unescaped
//!   `"` (or the end of input) and may span lines; `\"` is the only escape, any other backslash
//!   is kept literally; an unterminated empty quoted token at the end of input is no token;
//! - braces are ordinary tokens here: the parser gives `{` and `}` their meaning.

use nom::branch::alt;
use nom::bytes::complete::{take_till, take_till1, take_while1};
use nom::character::complete::{anychar, char};
use nom::combinator::{map, opt, recognize};
use nom::multi::fold_many0;
use nom::sequence::{pair, preceded};
use nom::{IResult, Parser};

/// One token: its text (quotes removed, escapes applied) and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub text: String,
    pub offset: usize,
}

/// Go's `unicode.IsSpace`, which is exactly Unicode's White_Space property.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Whitespace and line comments between tokens.
fn separator(input: &str) -> IResult<&str, ()> {
    fold_many0(
        alt((
            take_while1(is_space),
            recognize(pair(char('#'), take_till(|c| c == '\n'))),
        )),
        || (),
        |(), _| (),
    )
    .parse(input)
}

enum Piece<'a> {
    Text(&'a str),
    Escape(Option<char>),
}

/// A quoted token. Returns the text and whether it had any content or a closing quote: Go's
/// lexer emits nothing for a lone `"` at the end of input.
fn quoted(input: &str) -> IResult<&str, (String, bool)> {
    let (input, _) = char('"').parse(input)?;
    let (input, text) = fold_many0(
        alt((
            map(take_till1(|c| c == '"' || c == '\\'), Piece::Text),
            map(preceded(char('\\'), opt(anychar)), Piece::Escape),
        )),
        String::new,
        |mut acc, piece| {
            match piece {
                Piece::Text(t) => acc.push_str(t),
                Piece::Escape(Some('"')) => acc.push('"'),
                Piece::Escape(Some(c)) => {
                    acc.push('\\');
                    acc.push(c);
                }
                Piece::Escape(None) => {}
            }
            acc
        },
    )
    .parse(input)?;
    let (input, closing) = opt(char('"')).parse(input)?;
    let emitted = closing.is_some() || !text.is_empty();
    Ok((input, (text, emitted)))
}

/// A bare token: up to whitespace or `#`; a `#` then swallows everything up to whitespace.
fn bare(input: &str) -> IResult<&str, String> {
    let (input, raw) = take_while1(|c| c == '\r' || !(is_space(c) || c == '#')).parse(input)?;
    let (input, _) = opt(pair(char('#'), take_till(|c| is_space(c) && c != '\r'))).parse(input)?;
    Ok((input, raw.chars().filter(|&c| c != '\r').collect()))
}

/// Splits `src` (already decoded, BOM removed) into tokens.
pub(crate) fn tokenize(src: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = src;
    loop {
        // Both parsers are total on &str: fold_many0 and opt never fail, so the fallbacks below
        // only keep the loop well-defined.
        rest = separator(rest).map_or(rest, |(r, ())| r);
        if rest.is_empty() {
            break;
        }
        let offset = src.len() - rest.len();
        let parsed = if rest.starts_with('"') {
            quoted(rest).map(|(r, (text, emitted))| (r, emitted.then_some(text)))
        } else {
            bare(rest).map(|(r, text)| (r, Some(text)))
        };
        match parsed {
            Ok((r, text)) => {
                if let Some(text) = text {
                    tokens.push(Token { text, offset });
                }
                rest = r;
            }
            Err(_) => break,
        }
    }
    tokens
}

/// Decodes bytes the way Go's `bufio.Reader.ReadRune` does (each invalid byte becomes one
/// U+FFFD) and drops a leading byte order mark.
pub(crate) fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    match out.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        tokenize(src).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn splits_on_whitespace_and_drops_cr() {
        assert_eq!(texts("a b\tc\r\nd\u{3000}e"), ["a", "b", "c", "d", "e"]);
        assert_eq!(texts("fo\ro"), ["foo"]);
    }

    #[test]
    fn comments() {
        assert_eq!(texts("# whole line\na # rest\nb"), ["a", "b"]);
        assert_eq!(texts("foo#bar baz\nqux"), ["foo", "baz", "qux"]);
    }

    #[test]
    fn quotes() {
        assert_eq!(texts(r#""a b" "" x"y" "#), ["a b", "", "x\"y\""]);
        assert_eq!(texts(r#""a\"b\n\\c""#), ["a\"b\\n\\\\c"]);
        assert_eq!(texts("\"multi\nline\" next"), ["multi\nline", "next"]);
        assert_eq!(texts(r#""a"b"#), ["a", "b"]);
        assert_eq!(texts("x \""), ["x"]);
        assert_eq!(texts("x \"unterminated"), ["x", "unterminated"]);
    }

    #[test]
    fn decoding() {
        assert_eq!(decode(b"\xef\xbb\xbfa"), "a");
        assert_eq!(decode(b"a\xe2\x82b"), "a\u{fffd}\u{fffd}b");
    }
}
