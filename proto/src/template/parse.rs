//! Parsers for both template forms: the attribute syntax ([`parse_text`]) and XML
//! ([`parse_xml`]). Both return every attribute in document order with canonical names
//! ([`canonical_name`]), and both refuse what no template may hold: a value containing
//! `]]>` (OpenNebula aborts on it) and control characters XML cannot carry (every template
//! ends up in an XML document sooner or later).
//!
//! # Attribute syntax
//!
//! ```text
//! # a comment: a line whose first non-blank character is '#'
//! NAME = value                  unquoted: a run of anything but  = # , [ ]  blanks, newline
//! NAME = "a value"              quoted: may span lines; \" is a '"', any other '\' is literal
//! NAME =                        '=' then end of line (or input): empty value
//! DISK = [ IMAGE_ID = 3,        a vector: sub-attributes separated by ',', newlines
//!          TARGET = "vda" ]     allowed anywhere between '[' and ']'
//! EMPTY = [ ]                   an empty vector
//! ```
//!
//! Decisions where OpenNebula's own grammar is vague or unhelpful:
//! * Names are runs of ASCII letters, digits, `_` and `-`, canonicalized (upper-cased,
//!   `ONE_` prefix where OpenNebula adds one). The same rule holds in the XML form.
//! * A `#` that is not the first non-blank character of its line is an error (with a hint),
//!   not a comment and not part of a value: `PASSWORD = ab#c` would otherwise silently lose
//!   `#c`. Quote values that contain `#`.
//! * Blanks are space, tab and carriage return (so CRLF input works); `\r` inside a quoted
//!   value is kept.
//! * An unquoted value may contain `"` after its first character (`A = 5"` is `5"`).
//! * Attributes need no separator: `A = 1 B = 2` is two attributes. Between a name and its
//!   `=`, and between `=` and the value, a top-level attribute allows blanks but no newline
//!   (`NAME =` + newline is the empty value). Inside a vector newlines are free everywhere.
//! * In a vector, `A = ,` and `A = ]` give `A` an empty value, and one trailing comma before
//!   `]` is tolerated (`[ A = 1, ]`). Repeating a sub-attribute name keeps the first position
//!   with the last value (as [`Vector::set`]).
//! * A backslash cannot be escaped, so `"C:\"` is an unterminated value (the error says why);
//!   a value ending in `\` can only be written unquoted (`A = C:\`).
//!
//! # XML form
//!
//! The root element's name is ignored; each child element is an attribute: text (and CDATA,
//! entity and character references) makes a single value, child elements make a vector whose
//! children's text are the sub-attributes. An empty element is an empty single value.
//! Whitespace-only text between elements is ignored; other text outside a value, or text
//! mixed with sub-elements, is an error, as is anything nested deeper than a vector's
//! sub-attributes (which also bounds the nesting the reader ever has to track). XML
//! attributes, comments, processing instructions and the declaration are ignored.

use super::{AttrValue, Attribute, Template, Vector, canonical_name};
use quick_xml::Reader;
use quick_xml::events::Event;
use std::collections::HashMap;

/// A template that could not be parsed, with the position of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}, column {column}")]
pub struct TemplateError {
    pub message: String,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column of the problem, counted in characters.
    pub column: usize,
}

/// The sequence no value may contain (OpenNebula stores values in CDATA sections).
pub(crate) const CDATA_END: &str = "]]>";

/// Characters allowed in attribute names (before canonicalization).
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Whether `name` can be written as a name in either form.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(is_name_char)
}

/// Characters XML 1.0 cannot carry at all (C0 controls other than tab, LF, CR, and the two
/// non-characters U+FFFE/U+FFFF); templates refuse them.
pub(crate) fn is_forbidden_char(c: char) -> bool {
    matches!(c, '\0'..='\x08' | '\x0b' | '\x0c' | '\x0e'..='\x1f' | '\u{fffe}' | '\u{ffff}')
}

/// Why `value` cannot be part of a template, if it cannot.
pub(crate) fn value_problem(value: &str) -> Option<String> {
    if let Some(c) = value.chars().find(|&c| is_forbidden_char(c)) {
        return Some(format!("control character {} is not allowed", describe(c)));
    }
    if value.contains(CDATA_END) {
        return Some("']]>' is not allowed in a value".to_string());
    }
    None
}

/// A character as an error message shows it: quoted if printable, else its code point.
pub(crate) fn describe(c: char) -> String {
    if c.is_control() || (c.is_whitespace() && c != ' ') || c == '\u{feff}' {
        format!("U+{:04X}", c as u32)
    } else {
        format!("'{c}'")
    }
}

/// Builds a vector where a repeated sub-attribute name keeps its first position and takes the
/// new value, in linear time (a vector may have many sub-attributes).
#[derive(Default)]
struct VectorBuilder {
    vector: Vector,
    index: HashMap<String, usize>,
}

impl VectorBuilder {
    fn insert(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vector.attrs[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vector.attrs.len());
                self.vector.attrs.push((name, value));
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Pos {
    line: usize,
    column: usize,
}

impl Pos {
    fn error(self, message: impl Into<String>) -> TemplateError {
        TemplateError {
            message: message.into(),
            line: self.line,
            column: self.column,
        }
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

// ---------------------------------------------------------------------------------------------
// Attribute syntax
// ---------------------------------------------------------------------------------------------

/// Parses the attribute syntax.
pub fn parse_text(text: &str) -> Result<Template, TemplateError> {
    TextParser::new(text).template()
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

/// Characters that end an unquoted value.
fn ends_unquoted(c: char) -> bool {
    matches!(c, '=' | '#' | ',' | '[' | ']' | '\n') || is_blank(c)
}

/// Whether `value` can be written without quotes (and reads back as itself).
pub(crate) fn can_be_unquoted(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with('"')
        && !value
            .chars()
            .any(|c| ends_unquoted(c) || is_forbidden_char(c))
}

struct TextParser<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    line: usize,
    column: usize,
    /// Line on which the last token ended; a `#` starts a comment only on another line.
    token_line: usize,
}

impl<'a> TextParser<'a> {
    fn new(src: &'a str) -> Self {
        // A byte-order mark is not part of the template (and takes no column).
        let pos = if src.starts_with('\u{feff}') { 3 } else { 0 };
        TextParser {
            src,
            pos,
            line: 1,
            column: 1,
            token_line: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn here(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn end_token(&mut self) {
        self.token_line = self.line;
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.bump();
        }
    }

    /// Skips blanks, comment lines and (if `newlines`) line ends.
    fn skip_trivia(&mut self, newlines: bool) {
        loop {
            self.skip_blanks();
            match self.peek() {
                Some('\n') if newlines => {
                    self.bump();
                }
                Some('#') if self.token_line != self.line => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => return,
            }
        }
    }

    /// "unexpected X, expecting Y" at the current position.
    fn unexpected(&self, expecting: &str) -> TemplateError {
        let found = match self.peek() {
            None => "end of input".to_string(),
            Some('\n') => "end of line".to_string(),
            Some(c) => describe(c),
        };
        let mut message = format!("syntax error, unexpected {found}, expecting {expecting}");
        if self.peek() == Some('#') {
            message.push_str(" (a comment must start its own line; quote values that contain '#')");
        }
        self.here().error(message)
    }

    fn name(&mut self, expecting: &str) -> Result<String, TemplateError> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.bump();
        }
        if start == self.pos {
            return Err(self.unexpected(expecting));
        }
        self.end_token();
        Ok(self.src[start..self.pos].to_string())
    }

    fn equals(&mut self, name: &str) -> Result<(), TemplateError> {
        if self.peek() != Some('=') {
            return Err(self.unexpected(&format!("'=' after the name '{name}'")));
        }
        self.bump();
        self.end_token();
        Ok(())
    }

    fn template(mut self) -> Result<Template, TemplateError> {
        let mut t = Template::new();
        loop {
            self.skip_trivia(true);
            if self.peek().is_none() {
                return Ok(t);
            }
            let name = self.name("an attribute name")?;
            self.skip_blanks();
            self.equals(&name)?;
            self.skip_blanks();
            let value = match self.peek() {
                None | Some('\n') => AttrValue::Single(String::new()),
                Some('"') => AttrValue::Single(self.quoted()?),
                Some('[') => AttrValue::Vector(self.vector(&name)?),
                Some(',' | ']' | '=' | '#') => return Err(self.unexpected("a value")),
                Some(_) => AttrValue::Single(self.unquoted()?),
            };
            t.attrs.push(Attribute {
                name: canonical_name(&name),
                value,
            });
        }
    }

    fn vector(&mut self, name: &str) -> Result<Vector, TemplateError> {
        let open = self.here();
        self.bump();
        self.end_token();
        let unclosed = |p: &Self, expecting: &str| {
            let mut e = p.unexpected(expecting);
            if p.peek().is_none() {
                e.message.push_str(&format!(
                    " (the vector '{name}' opened at {open} is not closed)"
                ));
            }
            e
        };
        let mut v = VectorBuilder::default();
        self.skip_trivia(true);
        if self.peek() == Some(']') {
            self.bump();
            self.end_token();
            return Ok(v.vector);
        }
        loop {
            self.skip_trivia(true);
            if self.peek().is_none() {
                return Err(unclosed(self, "a sub-attribute name or ']'"));
            }
            let sub = self.name("a sub-attribute name or ']'")?;
            self.skip_trivia(true);
            if self.peek().is_none() {
                return Err(unclosed(self, &format!("'=' after the name '{sub}'")));
            }
            self.equals(&sub)?;
            self.skip_trivia(true);
            let value = match self.peek() {
                None => return Err(unclosed(self, "a value or ']'")),
                Some(',' | ']') => String::new(),
                Some('"') => self.quoted()?,
                Some('[') => {
                    return Err(self.here().error(format!(
                        "syntax error, unexpected '[': vectors cannot be nested (in the vector '{name}')"
                    )));
                }
                Some('=' | '#') => return Err(self.unexpected("a value")),
                Some(_) => self.unquoted()?,
            };
            v.insert(canonical_name(&sub), value);
            self.skip_trivia(true);
            match self.peek() {
                Some(',') => {
                    self.bump();
                    self.end_token();
                    self.skip_trivia(true);
                    if self.peek() == Some(']') {
                        self.bump();
                        self.end_token();
                        return Ok(v.vector);
                    }
                }
                Some(']') => {
                    self.bump();
                    self.end_token();
                    return Ok(v.vector);
                }
                _ => return Err(unclosed(self, "',' or ']'")),
            }
        }
    }

    fn quoted(&mut self) -> Result<String, TemplateError> {
        let open = self.here();
        self.bump();
        let mut out = String::new();
        let mut last_escape: Option<Pos> = None;
        loop {
            let at = self.here();
            match self.bump() {
                None => {
                    let mut message = "syntax error, unterminated quoted value: no closing '\"' \
                                       before the end of input"
                        .to_string();
                    if let Some(p) = last_escape {
                        message.push_str(&format!(
                            " (the \\\" at {p} is an escaped quote, not the end of the value; \
                             a value cannot end in '\\' when quoted)"
                        ));
                    }
                    return Err(open.error(message));
                }
                Some('"') => break,
                Some('\\') if self.peek() == Some('"') => {
                    self.bump();
                    last_escape = Some(at);
                    out.push('"');
                }
                Some(']') if self.src[self.pos..].starts_with("]>") => {
                    return Err(at.error("']]>' is not allowed in a value"));
                }
                Some(c) if is_forbidden_char(c) => {
                    return Err(at.error(format!(
                        "control character {} is not allowed in a value",
                        describe(c)
                    )));
                }
                Some(c) => out.push(c),
            }
        }
        self.end_token();
        Ok(out)
    }

    fn unquoted(&mut self) -> Result<String, TemplateError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if ends_unquoted(c) {
                break;
            }
            if is_forbidden_char(c) {
                return Err(self.here().error(format!(
                    "control character {} is not allowed in a value",
                    describe(c)
                )));
            }
            self.bump();
        }
        self.end_token();
        Ok(self.src[start..self.pos].to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// XML form
// ---------------------------------------------------------------------------------------------

/// Parses the XML form (see the module documentation).
pub fn parse_xml(text: &str) -> Result<Template, TemplateError> {
    XmlParser::new(text).template()
}

/// The line and column of byte offset `offset` in `src` (clamped to the text).
fn position_of(src: &str, offset: u64) -> Pos {
    let mut end = usize::try_from(offset).unwrap_or(usize::MAX).min(src.len());
    while !src.is_char_boundary(end) {
        end -= 1;
    }
    let before = &src[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// An element being read: its name as written, where it starts, and its text so far.
struct Open {
    raw: String,
    at: u64,
    text: String,
}

/// An attribute element (depth 2) being read.
struct OpenAttr {
    el: Open,
    /// Set once a sub-element appeared: the attribute is a vector.
    vector: Option<VectorBuilder>,
    /// The sub-attribute element (depth 3) being read.
    sub: Option<Open>,
}

struct XmlParser<'a> {
    src: &'a str,
    reader: Reader<&'a [u8]>,
    template: Template,
    /// Name of the open root element (depth 1).
    root: Option<String>,
    root_done: bool,
    attr: Option<OpenAttr>,
}

impl<'a> XmlParser<'a> {
    fn new(src: &'a str) -> Self {
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let mut reader = Reader::from_str(src);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        XmlParser {
            src,
            reader,
            template: Template::new(),
            root: None,
            root_done: false,
            attr: None,
        }
    }

    fn template(mut self) -> Result<Template, TemplateError> {
        let src = self.src;
        let error_at = |at: u64, message: String| position_of(src, at).error(message);
        loop {
            let at = self.reader.buffer_position();
            let event = match self.reader.read_event() {
                Ok(e) => e,
                Err(e) => {
                    let at = self.reader.error_position();
                    return Err(error_at(at, format!("malformed XML: {e}")));
                }
            };
            let result = match event {
                Event::Start(e) => self.start(e.name().as_ref(), at),
                Event::Empty(e) => self.start(e.name().as_ref(), at).and_then(|()| self.end()),
                Event::End(_) => self.end(),
                Event::Text(t) => self.text(&t.xml10_content()),
                Event::CData(t) => self.text(&t.xml10_content()),
                Event::GeneralRef(r) => match r.resolve_char_ref() {
                    Ok(Some(c)) => self.text(c.encode_utf8(&mut [0; 4])),
                    Ok(None) => match &*r {
                        "lt" => self.text("<"),
                        "gt" => self.text(">"),
                        "amp" => self.text("&"),
                        "apos" => self.text("'"),
                        "quot" => self.text("\""),
                        other => Err((None, format!("unknown entity '&{other};'"))),
                    },
                    Err(e) => Err((
                        None,
                        format!("invalid character reference '&{};': {e}", &*r),
                    )),
                },
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => Ok(()),
                Event::Eof => return self.finish().map_err(|(at, m)| error_at(at, m)),
            };
            // Errors without a better place are reported where the event starts.
            result.map_err(|(pos, m)| error_at(pos.unwrap_or(at), m))?;
        }
    }

    fn start(&mut self, raw: &str, at: u64) -> Result<(), (Option<u64>, String)> {
        if self.root.is_none() {
            if self.root_done {
                return Err((None, "a template has only one root element".into()));
            }
            // The root's name is ignored (any well-formed name will do).
            self.root = Some(raw.to_string());
            return Ok(());
        }
        if !is_valid_name(raw) {
            return Err((
                None,
                format!(
                    "invalid attribute name '{raw}': names may only contain letters, digits, \
                     '_' and '-'"
                ),
            ));
        }
        let open = Open {
            raw: raw.to_string(),
            at,
            text: String::new(),
        };
        let Some(attr) = self.attr.as_mut() else {
            self.attr = Some(OpenAttr {
                el: open,
                vector: None,
                sub: None,
            });
            return Ok(());
        };
        if attr.sub.is_some() {
            return Err((
                None,
                format!(
                    "element <{}> is nested too deeply: a template holds attributes, and \
                     vectors of sub-attributes in <{}>, nothing deeper",
                    open.raw, attr.el.raw
                ),
            ));
        }
        if !is_xml_whitespace(&attr.el.text) {
            return Err((Some(attr.el.at), mixed(&attr.el.raw)));
        }
        attr.vector.get_or_insert_with(VectorBuilder::default);
        attr.sub = Some(open);
        Ok(())
    }

    fn end(&mut self) -> Result<(), (Option<u64>, String)> {
        let Some(attr) = self.attr.as_mut() else {
            // The reader refuses an end tag without a start tag, so this is the root's.
            if self.root.take().is_some() {
                self.root_done = true;
            }
            return Ok(());
        };
        if let Some(sub) = attr.sub.take() {
            if let Some(problem) = value_problem(&sub.text) {
                let message = format!("{problem} (in <{}><{}>)", attr.el.raw, sub.raw);
                return Err((Some(sub.at), message));
            }
            let vector = attr.vector.get_or_insert_with(VectorBuilder::default);
            vector.insert(canonical_name(&sub.raw), sub.text);
            return Ok(());
        }
        let value = match attr.vector.take() {
            Some(v) => AttrValue::Vector(v.vector),
            None => {
                if let Some(problem) = value_problem(&attr.el.text) {
                    let message = format!("{problem} (in <{}>)", attr.el.raw);
                    return Err((Some(attr.el.at), message));
                }
                AttrValue::Single(std::mem::take(&mut attr.el.text))
            }
        };
        self.template.attrs.push(Attribute {
            name: canonical_name(&attr.el.raw),
            value,
        });
        self.attr = None;
        Ok(())
    }

    fn text(&mut self, text: &str) -> Result<(), (Option<u64>, String)> {
        match self.attr.as_mut() {
            Some(OpenAttr { sub: Some(sub), .. }) => sub.text.push_str(text),
            Some(attr) => {
                if attr.vector.is_some() && !is_xml_whitespace(text) {
                    return Err((None, mixed(&attr.el.raw)));
                }
                attr.el.text.push_str(text);
            }
            None if is_xml_whitespace(text) => {}
            None if self.root.is_some() => {
                return Err((
                    None,
                    "unexpected text directly inside the root element (attributes are \
                     elements)"
                        .into(),
                ));
            }
            None => return Err((None, "unexpected text outside the root element".into())),
        }
        Ok(())
    }

    fn finish(self) -> Result<Template, (u64, String)> {
        let at = self.src.len() as u64;
        let open = match &self.attr {
            Some(OpenAttr { sub: Some(sub), .. }) => Some(&sub.raw),
            Some(attr) => Some(&attr.el.raw),
            None => self.root.as_ref(),
        };
        if let Some(name) = open {
            return Err((
                at,
                format!("unexpected end of input, expecting '</{name}>'"),
            ));
        }
        if !self.root_done {
            return Err((
                at,
                "unexpected end of input, expecting a root element".into(),
            ));
        }
        Ok(self.template)
    }
}

fn mixed(name: &str) -> String {
    format!("element <{name}> mixes text and sub-elements")
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
