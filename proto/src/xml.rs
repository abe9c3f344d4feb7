//! A small, fast XML writer for object documents (no declaration, no namespace, escaped text).

use std::fmt::{Display, Write};

/// Appends `s` to `out` with the five XML special characters escaped.
pub fn escape_into(out: &mut String, s: &str) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\'' => "&apos;",
            // A raw CR would reach readers as LF (XML end-of-line normalization).
            b'\r' => "&#13;",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&s[last..]);
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// Builds an XML document into a string.
#[derive(Default, Debug)]
pub struct XmlWriter {
    buf: String,
}

impl XmlWriter {
    pub fn new() -> Self {
        XmlWriter {
            buf: String::with_capacity(1024),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        XmlWriter {
            buf: String::with_capacity(n),
        }
    }

    /// `<TAG>`
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `</TAG>`
    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `<TAG/>`
    pub fn empty(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push_str("/>");
        self
    }

    /// `<TAG>escaped text</TAG>`
    pub fn text(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.buf, text);
        self.close(tag)
    }

    /// `<TAG>value</TAG>` for numbers and other values whose Display needs no escaping.
    pub fn num(&mut self, tag: &str, value: impl Display) -> &mut Self {
        self.open(tag);
        let _ = write!(self.buf, "{value}");
        self.close(tag)
    }

    /// `<TAG>1</TAG>` or `<TAG>0</TAG>`
    pub fn flag(&mut self, tag: &str, value: bool) -> &mut Self {
        self.num(tag, if value { 1 } else { 0 })
    }

    /// Appends already well-formed XML.
    pub fn raw(&mut self, xml: &str) -> &mut Self {
        self.buf.push_str(xml);
        self
    }

    pub fn as_str(&self) -> &str {
        &self.buf
    }

    pub fn finish(self) -> String {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specials() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\r\nb"), "a&#13;\nb");
    }

    #[test]
    fn builds_elements() {
        let mut w = XmlWriter::new();
        w.open("A")
            .num("ID", 3)
            .text("N", "x&y")
            .empty("E")
            .close("A");
        assert_eq!(w.finish(), "<A><ID>3</ID><N>x&amp;y</N><E/></A>");
    }
}
