//! Parsing `methodCall` and `methodResponse` bodies.
//!
//! quick-xml delivers a stream of events; [`Parser::next`] folds them into a few tokens (start tag,
//! end tag, one merged piece of text, end of input) and the grammar below walks those tokens.
//! Values are built with an explicit stack instead of recursion, so the nesting limit is the only
//! bound on depth and a deep body cannot overflow the thread's stack.

use super::{Limits, MethodCall, MethodResponse, Value, XmlRpcError};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use quick_xml::Reader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesStart, Event};
use std::borrow::Cow;
use std::fmt;
use std::num::IntErrorKind;

/// Parses a request body as sent by pyone, the Ruby OCA, goca and friends.
///
/// A missing `<params>` or an empty `<params/>` gives an empty parameter list.
pub fn parse_call(body: &[u8], limits: &Limits) -> Result<MethodCall> {
    let mut p = Parser::new(body, limits)?;
    p.expect_start(Tag::MethodCall)?;
    p.expect_start(Tag::MethodName)?;
    let method = p.text_until_end(&Tag::MethodName)?.trim().to_owned();
    if method.is_empty() {
        return p.fail("empty <methodName>");
    }
    let params = match p.next_non_ws()? {
        Tok::Start(Tag::Params) => {
            let params = p.params()?;
            p.expect_end(Tag::MethodCall)?;
            params
        }
        Tok::End(Tag::MethodCall) => Vec::new(),
        other => return p.unexpected(&other, "<params> or </methodCall>"),
    };
    p.expect_eof(Tag::MethodCall)?;
    Ok(MethodCall { method, params })
}

/// Parses a response body: one value, or a fault struct with `faultCode` and `faultString`.
pub fn parse_response(body: &[u8], limits: &Limits) -> Result<MethodResponse> {
    let mut p = Parser::new(body, limits)?;
    p.expect_start(Tag::MethodResponse)?;
    let response = match p.next_non_ws()? {
        Tok::Start(Tag::Params) => {
            let mut params = p.params()?;
            p.expect_end(Tag::MethodResponse)?;
            let n = params.len();
            match (params.pop(), n) {
                (Some(v), 1) => MethodResponse::Success(v),
                _ => {
                    return p.fail(format!(
                        "a response carries exactly one value, this one has {n}"
                    ));
                }
            }
        }
        Tok::Start(Tag::Fault) => {
            p.expect_start(Tag::Value)?;
            let v = p.value()?;
            p.expect_end(Tag::Fault)?;
            p.expect_end(Tag::MethodResponse)?;
            p.fault(v)?
        }
        other => return p.unexpected(&other, "<params> or <fault>"),
    };
    p.expect_eof(Tag::MethodResponse)?;
    Ok(response)
}

/// Base64 as peers really send it: padding optional, stray trailing bits tolerated (as Python's
/// decoder does). Whitespace is removed before decoding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Element names the grammar knows, by local name (so `ex:i8` is `I8`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tag {
    MethodCall,
    MethodName,
    MethodResponse,
    Params,
    Param,
    Fault,
    Value,
    Array,
    Data,
    Struct,
    Member,
    Name,
    Int,
    I4,
    I8,
    Boolean,
    String,
    Double,
    Base64,
    DateTime,
    Nil,
    Other(Box<str>),
}

impl Tag {
    fn from_local(name: &str) -> Tag {
        match name {
            "methodCall" => Tag::MethodCall,
            "methodName" => Tag::MethodName,
            "methodResponse" => Tag::MethodResponse,
            "params" => Tag::Params,
            "param" => Tag::Param,
            "fault" => Tag::Fault,
            "value" => Tag::Value,
            "array" => Tag::Array,
            "data" => Tag::Data,
            "struct" => Tag::Struct,
            "member" => Tag::Member,
            "name" => Tag::Name,
            "int" => Tag::Int,
            "i4" => Tag::I4,
            "i8" => Tag::I8,
            "boolean" => Tag::Boolean,
            "string" => Tag::String,
            "double" => Tag::Double,
            "base64" => Tag::Base64,
            "dateTime.iso8601" => Tag::DateTime,
            "nil" => Tag::Nil,
            other => Tag::Other(other.into()),
        }
    }

    fn name(&self) -> &str {
        match self {
            Tag::MethodCall => "methodCall",
            Tag::MethodName => "methodName",
            Tag::MethodResponse => "methodResponse",
            Tag::Params => "params",
            Tag::Param => "param",
            Tag::Fault => "fault",
            Tag::Value => "value",
            Tag::Array => "array",
            Tag::Data => "data",
            Tag::Struct => "struct",
            Tag::Member => "member",
            Tag::Name => "name",
            Tag::Int => "int",
            Tag::I4 => "i4",
            Tag::I8 => "i8",
            Tag::Boolean => "boolean",
            Tag::String => "string",
            Tag::Double => "double",
            Tag::Base64 => "base64",
            Tag::DateTime => "dateTime.iso8601",
            Tag::Nil => "nil",
            Tag::Other(name) => name,
        }
    }
}

/// What the grammar sees: markup, or all the text between two tags merged into one piece.
#[derive(Debug)]
enum Tok<'a> {
    Start(Tag),
    End(Tag),
    Text(Cow<'a, str>),
    Eof,
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Start(t) => write!(f, "<{}>", t.name()),
            Tok::End(t) => write!(f, "</{}>", t.name()),
            Tok::Text(s) => write!(f, "text {:?}", Snippet(s)),
            Tok::Eof => f.write_str("end of input"),
        }
    }
}

/// At most 40 characters of some text, for error messages.
struct Snippet<'s>(&'s str);

impl fmt::Debug for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(40) {
            Some((i, _)) => write!(f, "{:?}...", &self.0[..i]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

fn is_ws(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

fn trim_ws(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\n', '\r'])
}

/// An array or struct whose `<value>` is open while its items are being read.
enum Frame {
    Array(Vec<Value>),
    /// Members so far, and the name of the member whose value is being read.
    Struct(Vec<(String, Value)>, String),
}

/// What follows a `<value>` start tag.
enum Content {
    /// A complete value; its `</value>` has been consumed.
    Done(Value),
    /// An array or struct was opened; its items come next.
    Open(Frame),
}

/// The next thing inside an open array or struct.
enum Item {
    /// A `<value>` start tag was consumed (for a struct, with its member name).
    Value,
    /// The container closed; `</value>` of the container itself is still to come.
    Closed,
}

struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    /// An event read while merging text that belongs to the next token.
    pending: Option<Event<'a>>,
    /// The end tag that a self-closing `<tag/>` implies, delivered on the next call.
    pending_end: Option<Tag>,
    /// Whether a start tag was seen (an XML declaration must come before any).
    in_document: bool,
    max_depth: usize,
}

type Result<T> = std::result::Result<T, XmlRpcError>;

impl<'a> Parser<'a> {
    fn new(body: &'a [u8], limits: &Limits) -> Result<Self> {
        if body.len() > limits.max_bytes {
            return Err(XmlRpcError::TooLarge(format!(
                "body is {} bytes, the limit is {}",
                body.len(),
                limits.max_bytes
            )));
        }
        let text = std::str::from_utf8(body).map_err(|e| {
            XmlRpcError::Malformed(format!(
                "body is not valid UTF-8 (at byte {})",
                e.valid_up_to()
            ))
        })?;
        Ok(Parser {
            reader: Reader::from_str(text),
            pending: None,
            pending_end: None,
            in_document: false,
            max_depth: limits.max_depth,
        })
    }

    fn fail<T>(&self, msg: impl fmt::Display) -> Result<T> {
        Err(XmlRpcError::Malformed(format!(
            "{msg} (at byte {})",
            self.reader.buffer_position()
        )))
    }

    fn unexpected<T>(&self, tok: &Tok<'_>, wanted: &str) -> Result<T> {
        self.fail(format!("expected {wanted}, found {tok}"))
    }

    fn next_event(&mut self) -> Result<Event<'a>> {
        if let Some(ev) = self.pending.take() {
            return Ok(ev);
        }
        self.reader.read_event().map_err(|e| {
            XmlRpcError::Malformed(format!("{e} (at byte {})", self.reader.error_position()))
        })
    }

    fn tag(&self, e: &BytesStart<'_>) -> Result<Tag> {
        // Attributes mean nothing in XML-RPC, but a broken one means a broken body.
        for attr in e.attributes() {
            if let Err(err) = attr {
                return self.fail(format!("bad attribute: {err}"));
            }
        }
        Ok(Tag::from_local(e.local_name().as_ref()))
    }

    /// Text, CDATA and references as text, or `None` for any other event.
    fn text_piece(&self, ev: &Event<'a>) -> Result<Option<Cow<'a, str>>> {
        Ok(Some(match ev {
            Event::Text(t) => t.xml10_content(),
            Event::CData(c) => c.xml10_content(),
            Event::GeneralRef(r) => {
                let resolved = r.resolve_char_ref().map_err(|e| {
                    XmlRpcError::Malformed(format!(
                        "bad character reference &{}; ({e}) (at byte {})",
                        &**r,
                        self.reader.buffer_position()
                    ))
                })?;
                match resolved {
                    Some(ch) => Cow::Owned(ch.to_string()),
                    None => match resolve_xml_entity(r) {
                        Some(s) => Cow::Borrowed(s),
                        None => return self.fail(format!("unknown entity &{};", &**r)),
                    },
                }
            }
            _ => return Ok(None),
        }))
    }

    /// The next token. Comments and processing instructions vanish (also between two pieces of
    /// text, which are then joined).
    fn next(&mut self) -> Result<Tok<'a>> {
        if let Some(tag) = self.pending_end.take() {
            return Ok(Tok::End(tag));
        }
        loop {
            let ev = self.next_event()?;
            if let Some(first) = self.text_piece(&ev)? {
                return self.merge_text(first).map(Tok::Text);
            }
            match ev {
                Event::Start(e) => {
                    self.in_document = true;
                    return Ok(Tok::Start(self.tag(&e)?));
                }
                Event::Empty(e) => {
                    self.in_document = true;
                    let tag = self.tag(&e)?;
                    self.pending_end = Some(tag.clone());
                    return Ok(Tok::Start(tag));
                }
                Event::End(e) => return Ok(Tok::End(Tag::from_local(e.local_name().as_ref()))),
                Event::Eof => return Ok(Tok::Eof),
                Event::Decl(_) if self.in_document => {
                    return self.fail("XML declaration inside the document");
                }
                Event::DocType(_) => return self.fail("DOCTYPE is not allowed in XML-RPC"),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return self.fail("internal error: text event not merged");
                }
            }
        }
    }

    fn merge_text(&mut self, first: Cow<'a, str>) -> Result<Cow<'a, str>> {
        let mut text = first;
        loop {
            let ev = self.next_event()?;
            if let Some(piece) = self.text_piece(&ev)? {
                text.to_mut().push_str(&piece);
                continue;
            }
            match ev {
                Event::Comment(_) | Event::PI(_) => {}
                other => {
                    self.pending = Some(other);
                    return Ok(text);
                }
            }
        }
    }

    /// The next token that is not whitespace; other text is an error here.
    fn next_non_ws(&mut self) -> Result<Tok<'a>> {
        loop {
            match self.next()? {
                Tok::Text(t) if is_ws(&t) => {}
                Tok::Text(t) => {
                    return self.fail(format!("unexpected text {:?} outside a value", Snippet(&t)));
                }
                tok => return Ok(tok),
            }
        }
    }

    fn expect_start(&mut self, tag: Tag) -> Result<()> {
        match self.next_non_ws()? {
            Tok::Start(t) if t == tag => Ok(()),
            other => self.unexpected(&other, &format!("<{}>", tag.name())),
        }
    }

    fn expect_end(&mut self, tag: Tag) -> Result<()> {
        match self.next_non_ws()? {
            Tok::End(t) if t == tag => Ok(()),
            other => self.unexpected(&other, &format!("</{}>", tag.name())),
        }
    }

    fn expect_eof(&mut self, root: Tag) -> Result<()> {
        match self.next_non_ws()? {
            Tok::Eof => Ok(()),
            other => self.fail(format!(
                "trailing content after </{}>: {other}",
                root.name()
            )),
        }
    }

    /// The text of an element that holds only text (possibly none), through its end tag.
    fn text_until_end(&mut self, tag: &Tag) -> Result<Cow<'a, str>> {
        let text = match self.next()? {
            Tok::End(t) if t == *tag => return Ok(Cow::Borrowed("")),
            Tok::Text(s) => s,
            other => return self.unexpected(&other, &format!("text or </{}>", tag.name())),
        };
        match self.next()? {
            Tok::End(t) if t == *tag => Ok(text),
            other => self.unexpected(&other, &format!("</{}>", tag.name())),
        }
    }

    /// `<param><value>..</value></param>*` through `</params>`.
    fn params(&mut self) -> Result<Vec<Value>> {
        let mut params = Vec::new();
        loop {
            match self.next_non_ws()? {
                Tok::Start(Tag::Param) => {
                    self.expect_start(Tag::Value)?;
                    params.push(self.value()?);
                    self.expect_end(Tag::Param)?;
                }
                Tok::End(Tag::Params) => return Ok(params),
                other => return self.unexpected(&other, "<param> or </params>"),
            }
        }
    }

    /// One value, its `<value>` start tag already consumed, through its `</value>`.
    fn value(&mut self) -> Result<Value> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            // A `<value>` was just opened.
            let mut completed = match self.value_content()? {
                Content::Done(v) => Some(v),
                Content::Open(frame) => {
                    if stack.len() >= self.max_depth {
                        return Err(XmlRpcError::TooLarge(format!(
                            "arrays and structs nested deeper than {} (at byte {})",
                            self.max_depth,
                            self.reader.buffer_position()
                        )));
                    }
                    stack.push(frame);
                    None
                }
            };
            // Attach finished values to their containers until one wants another item.
            loop {
                if let Some(v) = completed.take() {
                    match stack.last_mut() {
                        None => return Ok(v),
                        Some(Frame::Array(items)) => items.push(v),
                        Some(Frame::Struct(members, name)) => {
                            members.push((std::mem::take(name), v));
                            self.expect_end(Tag::Member)?;
                        }
                    }
                }
                let Some(frame) = stack.last_mut() else {
                    return self.fail("internal error: no open container");
                };
                match self.next_item(frame)? {
                    Item::Value => break,
                    Item::Closed => {
                        completed = Some(match stack.pop() {
                            Some(Frame::Array(items)) => Value::Array(items),
                            Some(Frame::Struct(members, _)) => Value::Struct(members),
                            None => return self.fail("internal error: no open container"),
                        });
                        self.expect_end(Tag::Value)?;
                    }
                }
            }
        }
    }

    fn next_item(&mut self, frame: &mut Frame) -> Result<Item> {
        match frame {
            Frame::Array(_) => match self.next_non_ws()? {
                Tok::Start(Tag::Value) => Ok(Item::Value),
                Tok::End(Tag::Data) => {
                    self.expect_end(Tag::Array)?;
                    Ok(Item::Closed)
                }
                other => self.unexpected(&other, "<value> or </data> in an array"),
            },
            Frame::Struct(_, name) => match self.next_non_ws()? {
                Tok::Start(Tag::Member) => {
                    self.expect_start(Tag::Name)?;
                    *name = self.text_until_end(&Tag::Name)?.into_owned();
                    self.expect_start(Tag::Value)?;
                    Ok(Item::Value)
                }
                Tok::End(Tag::Struct) => Ok(Item::Closed),
                other => self.unexpected(&other, "<member> or </struct>"),
            },
        }
    }

    fn value_content(&mut self) -> Result<Content> {
        let tag = match self.next()? {
            Tok::End(Tag::Value) => return Ok(Content::Done(Value::String(String::new()))),
            Tok::Start(tag) => tag,
            // Untyped `<value>text</value>` is a string, whitespace and all.
            Tok::Text(text) => match self.next()? {
                Tok::End(Tag::Value) => return Ok(Content::Done(Value::String(text.into_owned()))),
                Tok::Start(tag) if is_ws(&text) => tag,
                Tok::Start(tag) => {
                    return self.fail(format!(
                        "text {:?} mixed with <{}> in a value",
                        Snippet(&text),
                        tag.name()
                    ));
                }
                other => return self.unexpected(&other, "</value> or a type tag"),
            },
            other => return self.unexpected(&other, "a type tag, text or </value>"),
        };
        match tag {
            Tag::Array => match self.next_non_ws()? {
                Tok::Start(Tag::Data) => Ok(Content::Open(Frame::Array(Vec::new()))),
                // `<array/>` without `<data>`: not standard, but unambiguous.
                Tok::End(Tag::Array) => {
                    self.expect_end(Tag::Value)?;
                    Ok(Content::Done(Value::Array(Vec::new())))
                }
                other => self.unexpected(&other, "<data>"),
            },
            Tag::Struct => Ok(Content::Open(Frame::Struct(Vec::new(), String::new()))),
            Tag::Int
            | Tag::I4
            | Tag::I8
            | Tag::Boolean
            | Tag::String
            | Tag::Double
            | Tag::Base64
            | Tag::DateTime
            | Tag::Nil => {
                let text = self.text_until_end(&tag)?;
                let v = self.scalar(&tag, text)?;
                self.expect_end(Tag::Value)?;
                Ok(Content::Done(v))
            }
            Tag::Other(name) => self.fail(format!("unknown value type <{name}>")),
            other => self.fail(format!("unexpected <{}> inside <value>", other.name())),
        }
    }

    fn scalar(&self, tag: &Tag, text: Cow<'a, str>) -> Result<Value> {
        Ok(match tag {
            // Any width up to i64 in any integer tag: goca writes `<int>` for int64 values.
            Tag::Int | Tag::I4 | Tag::I8 => {
                let t = trim_ws(&text);
                match t.parse::<i64>() {
                    Ok(n) => Value::Int(n),
                    Err(e)
                        if matches!(
                            e.kind(),
                            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow
                        ) =>
                    {
                        return self.fail(format!("integer {:?} out of range", Snippet(t)));
                    }
                    Err(_) => return self.fail(format!("bad integer {:?}", Snippet(t))),
                }
            }
            Tag::Boolean => match trim_ws(&text) {
                "1" => Value::Bool(true),
                "0" => Value::Bool(false),
                t if t.eq_ignore_ascii_case("true") => Value::Bool(true),
                t if t.eq_ignore_ascii_case("false") => Value::Bool(false),
                t => return self.fail(format!("bad boolean {:?} (want 0 or 1)", Snippet(t))),
            },
            Tag::String => Value::String(text.into_owned()),
            Tag::Double => {
                let t = trim_ws(&text);
                match t.parse::<f64>() {
                    Ok(x) => Value::Double(x),
                    Err(_) => return self.fail(format!("bad double {:?}", Snippet(t))),
                }
            }
            Tag::Base64 => {
                let compact: Cow<'_, str> = if text.bytes().any(|b| b.is_ascii_whitespace()) {
                    Cow::Owned(text.chars().filter(|c| !c.is_ascii_whitespace()).collect())
                } else {
                    Cow::Borrowed(&text)
                };
                match BASE64.decode(compact.as_bytes()) {
                    Ok(bytes) => Value::Base64(bytes),
                    Err(e) => return self.fail(format!("bad base64: {e}")),
                }
            }
            Tag::DateTime => Value::DateTime(trim_ws(&text).to_owned()),
            Tag::Nil => {
                if !is_ws(&text) {
                    return self.fail(format!("<nil/> with content {:?}", Snippet(&text)));
                }
                Value::Nil
            }
            other => return self.fail(format!("<{}> is not a scalar type", other.name())),
        })
    }

    /// A fault's value: a struct with an int `faultCode` and a string `faultString`.
    fn fault(&self, v: Value) -> Result<MethodResponse> {
        let Value::Struct(members) = v else {
            return self.fail(format!("a fault must be a struct, not {}", v.type_name()));
        };
        let mut code = None;
        let mut message = None;
        for (name, value) in members {
            match (name.as_str(), value) {
                ("faultCode", Value::Int(c)) => match i32::try_from(c) {
                    Ok(c) => code = Some(c),
                    Err(_) => return self.fail(format!("faultCode {c} out of range")),
                },
                ("faultString", Value::String(s)) => message = Some(s),
                ("faultCode" | "faultString", other) => {
                    return self.fail(format!("{name} has the wrong type {}", other.type_name()));
                }
                _ => {}
            }
        }
        match (code, message) {
            (Some(code), Some(message)) => Ok(MethodResponse::Fault { code, message }),
            (None, _) => self.fail("fault without an int faultCode"),
            (_, None) => self.fail("fault without a string faultString"),
        }
    }
}
