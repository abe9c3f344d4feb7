//! A small read-only XML tree for OpenNebula's object documents.
//!
//! Documents are plain: elements and text, no attributes that matter, no namespaces. A pool
//! answer can hold 20,000 VMs (about 8 MB), so the tree is one vector of fixed-size nodes and
//! one string holding every element name and text: parsing allocates a handful of times
//! whatever the size, and reading an element's text is a slice.
//!
//! Text is the concatenation of an element's text, CDATA and references (`&amp;`, `&#13;`);
//! the text of an element that also has child elements is dropped (it is indentation).

use crate::OcaError;
use quick_xml::Reader;
use quick_xml::events::Event;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    name: (u32, u32),
    text: (u32, u32),
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
}

/// A parsed document. Cheap to walk; owns its text.
#[derive(Clone, Debug)]
pub struct Document {
    buf: String,
    nodes: Vec<Node>,
}

/// Nesting deeper than this is refused (OpenNebula's documents nest five or six levels).
const MAX_DEPTH: usize = 64;

impl Document {
    /// Parses `xml`. Anything that is not well-formed XML with one root element is an error.
    pub fn parse(xml: &str) -> Result<Document, OcaError> {
        let bad = |m: String| OcaError::Protocol(format!("malformed XML document: {m}"));
        let mut reader = Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        // Names and text together are never longer than the input.
        let mut doc = Document {
            buf: String::with_capacity(xml.len() / 2),
            nodes: Vec::with_capacity(xml.len() / 24 + 1),
        };
        let mut stack: Vec<u32> = Vec::with_capacity(16);
        let mut root_done = false;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| bad(format!("{e} at byte {}", reader.error_position())))?;
            match event {
                Event::Start(e) => {
                    let idx = doc.open(&stack, e.name().as_ref(), &mut root_done)?;
                    stack.push(idx);
                    if stack.len() > MAX_DEPTH {
                        return Err(bad(format!("nested deeper than {MAX_DEPTH} elements")));
                    }
                }
                Event::Empty(e) => {
                    doc.open(&stack, e.name().as_ref(), &mut root_done)?;
                }
                Event::End(_) => {
                    let idx = stack.pop().expect("the reader checks end tags");
                    let node = &mut doc.nodes[idx as usize];
                    // Indentation between child elements is not text.
                    if node.first_child != NONE {
                        node.text = (0, 0);
                    }
                    if stack.is_empty() {
                        root_done = true;
                    }
                }
                Event::Text(t) => doc.text(&stack, &t.xml10_content())?,
                Event::CData(t) => doc.text(&stack, &t.xml10_content())?,
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c,
                        Ok(None) => match &*r {
                            "lt" => '<',
                            "gt" => '>',
                            "amp" => '&',
                            "apos" => '\'',
                            "quot" => '"',
                            other => return Err(bad(format!("unknown entity &{other};"))),
                        },
                        Err(e) => return Err(bad(format!("bad character reference: {e}"))),
                    };
                    doc.text(&stack, resolved.encode_utf8(&mut [0; 4]))?;
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
                Event::Eof => break,
            }
        }
        if !stack.is_empty() || doc.nodes.is_empty() {
            return Err(bad("unexpected end of document".into()));
        }
        Ok(doc)
    }

    fn open(&mut self, stack: &[u32], name: &str, root_done: &mut bool) -> Result<u32, OcaError> {
        if stack.is_empty() && (*root_done || !self.nodes.is_empty()) {
            return Err(OcaError::Protocol(
                "malformed XML document: more than one root element".into(),
            ));
        }
        let start = self.buf.len() as u32;
        self.buf.push_str(name);
        let idx = self.nodes.len() as u32;
        let at = self.buf.len() as u32;
        self.nodes.push(Node {
            name: (start, at),
            text: (at, at),
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
        });
        if let Some(&parent) = stack.last() {
            let p = &mut self.nodes[parent as usize];
            if p.first_child == NONE {
                p.first_child = idx;
            } else {
                let last = p.last_child;
                self.nodes[last as usize].next_sibling = idx;
            }
            self.nodes[parent as usize].last_child = idx;
        }
        Ok(idx)
    }

    fn text(&mut self, stack: &[u32], text: &str) -> Result<(), OcaError> {
        let Some(&top) = stack.last() else {
            if text.trim().is_empty() {
                return Ok(());
            }
            return Err(OcaError::Protocol(
                "malformed XML document: text outside the root element".into(),
            ));
        };
        let node = self.nodes[top as usize];
        if node.first_child != NONE {
            // Text between child elements: indentation, dropped at the end tag.
            return Ok(());
        }
        let end = self.buf.len() as u32;
        if node.text.1 != end {
            // Another element's text was written since this one started (cannot happen
            // without children, which were excluded above); start a fresh copy.
            let (s, e) = node.text;
            let old = self.buf[s as usize..e as usize].to_owned();
            let start = self.buf.len() as u32;
            self.buf.push_str(&old);
            self.nodes[top as usize].text = (start, self.buf.len() as u32);
        }
        self.buf.push_str(text);
        self.nodes[top as usize].text.1 = self.buf.len() as u32;
        Ok(())
    }

    /// The root element.
    pub fn root(&self) -> Element<'_> {
        Element { doc: self, idx: 0 }
    }
}

/// One element of a [`Document`].
#[derive(Clone, Copy)]
pub struct Element<'d> {
    doc: &'d Document,
    idx: u32,
}

impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{}>", self.name())
    }
}

impl<'d> Element<'d> {
    fn node(&self) -> &'d Node {
        &self.doc.nodes[self.idx as usize]
    }

    pub fn name(&self) -> &'d str {
        let (s, e) = self.node().name;
        &self.doc.buf[s as usize..e as usize]
    }

    /// The element's text ("" for an element with children or none).
    pub fn text(&self) -> &'d str {
        let (s, e) = self.node().text;
        &self.doc.buf[s as usize..e as usize]
    }

    pub fn has_children(&self) -> bool {
        self.node().first_child != NONE
    }

    /// Child elements in document order.
    pub fn children(&self) -> Children<'d> {
        Children {
            doc: self.doc,
            next: self.node().first_child,
        }
    }

    /// The first child element named `name`.
    pub fn child(&self, name: &str) -> Option<Element<'d>> {
        self.children().find(|c| c.name() == name)
    }

    /// Every child element named `name`.
    pub fn children_named<'n>(&self, name: &'n str) -> impl Iterator<Item = Element<'d>> + 'n
    where
        'd: 'n,
    {
        self.children().filter(move |c| c.name() == name)
    }

    /// The text of the first child named `name`.
    pub fn child_text(&self, name: &str) -> Option<&'d str> {
        self.child(name).map(|c| c.text())
    }

    /// The element at a `/`-separated path of child names below this one (`HOST_SHARE/MAX_CPU`).
    pub fn path(&self, path: &str) -> Option<Element<'d>> {
        let mut at = *self;
        for step in path.split('/').filter(|s| !s.is_empty()) {
            at = at.child(step)?;
        }
        Some(at)
    }

    /// The text at a path (see [`Element::path`]).
    pub fn path_text(&self, path: &str) -> Option<&'d str> {
        self.path(path).map(|e| e.text())
    }
}

/// Iterator over child elements.
pub struct Children<'d> {
    doc: &'d Document,
    next: u32,
}

impl<'d> Iterator for Children<'d> {
    type Item = Element<'d>;

    fn next(&mut self) -> Option<Element<'d>> {
        if self.next == NONE {
            return None;
        }
        let e = Element {
            doc: self.doc,
            idx: self.next,
        };
        self.next = e.node().next_sibling;
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_text_and_children() {
        let doc = Document::parse(
            "<?xml version=\"1.0\"?>\n<VM>\n  <ID>7</ID>\n  <NAME>a&amp;b &#65;<![CDATA[<c>]]></NAME>\
             <TEMPLATE><DISK><ID>0</ID></DISK><DISK><ID>1</ID></DISK><E/></TEMPLATE></VM>",
        )
        .unwrap();
        let vm = doc.root();
        assert_eq!(vm.name(), "VM");
        assert_eq!(vm.text(), "");
        assert_eq!(vm.child_text("ID"), Some("7"));
        assert_eq!(vm.child_text("NAME"), Some("a&b A<c>"));
        let t = vm.child("TEMPLATE").unwrap();
        let ids: Vec<_> = t
            .children_named("DISK")
            .map(|d| d.child_text("ID").unwrap())
            .collect();
        assert_eq!(ids, ["0", "1"]);
        assert_eq!(t.child_text("E"), Some(""));
        assert_eq!(vm.path_text("TEMPLATE/DISK/ID"), Some("0"));
        assert!(vm.path("TEMPLATE/NIC").is_none());
        assert_eq!(vm.children().count(), 3);
    }

    #[test]
    fn refuses_what_is_not_a_document() {
        for bad in [
            "",
            "<A>",
            "<A></B>",
            "<A/><B/>",
            "text",
            "<A>&nope;</A>",
            "<A><B></A>",
        ] {
            assert!(Document::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_deep_nesting() {
        let deep = "<A>".repeat(100) + &"</A>".repeat(100);
        assert!(Document::parse(&deep).is_err());
    }
}
