//! The generic template view of OpenNebula's documents: an ordered multimap of attributes,
//! each a single value or a vector of sub-attributes (one-proto's [`Template`]).
//!
//! Every `TEMPLATE`, `USER_TEMPLATE`, `MONITORING` section of a document is read into one, so
//! attributes this crate does not know survive a read / modify / `update` round trip.
//!
//! For JSON (serde), a template is written the way OpenNebula's clients show it: an object
//! keyed by attribute name, a vector as an object of strings, a name that repeats as an array
//! (`{"CPU": "1", "DISK": [{"IMAGE_ID": "3"}, {"IMAGE_ID": "4"}]}`). [`serde_template`] reads
//! the same form back.

use crate::dom::Element;
pub use one_proto::template::{AttrValue, Attribute, Template, TemplateError, Vector};

/// The template held by `e`'s children: text children are single values, children with
/// children are vectors (their children's text are the sub-attributes). OpenNebula
/// templates nest no deeper; anything deeper is dropped.
pub fn from_element(e: Element<'_>) -> Template {
    let mut t = Template {
        attrs: Vec::with_capacity(8),
    };
    for c in e.children() {
        let value = if c.has_children() {
            AttrValue::Vector(vector_from_element(c))
        } else {
            AttrValue::Single(c.text().to_owned())
        };
        t.attrs.push(Attribute {
            name: c.name().to_owned(),
            value,
        });
    }
    t
}

/// The vector held by `e`'s children (`<DISK><IMAGE_ID>3</IMAGE_ID>...</DISK>`).
pub fn vector_from_element(e: Element<'_>) -> Vector {
    Vector {
        attrs: e
            .children()
            .map(|s| (s.name().to_owned(), s.text().to_owned()))
            .collect(),
    }
}

/// The template of the optional child `name` of `e` (empty when absent).
pub fn child_template(e: Element<'_>, name: &str) -> Template {
    e.child(name).map(from_element).unwrap_or_default()
}

/// serde for a [`Template`] in OpenNebula's JSON shape (see the module documentation).
/// Use as `#[serde(with = "oca::serde_template")]`.
pub mod serde_template {
    use super::{AttrValue, Attribute, Template, Vector};
    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::{SerializeMap, SerializeSeq};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;

    struct VectorJson<'a>(&'a Vector);

    impl Serialize for VectorJson<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.attrs.len()))?;
            for (k, v) in &self.0.attrs {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }

    struct ValueJson<'a>(&'a AttrValue);

    impl Serialize for ValueJson<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                AttrValue::Single(v) => s.serialize_str(v),
                AttrValue::Vector(v) => VectorJson(v).serialize(s),
            }
        }
    }

    struct Several<'a>(Vec<&'a AttrValue>);

    impl Serialize for Several<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.0.len()))?;
            for v in &self.0 {
                seq.serialize_element(&ValueJson(v))?;
            }
            seq.end()
        }
    }

    pub fn serialize<S: Serializer>(t: &Template, s: S) -> Result<S::Ok, S::Error> {
        // Names in order of first appearance; a repeated name becomes an array.
        let mut names: Vec<&str> = Vec::new();
        for a in &t.attrs {
            if !names.contains(&a.name.as_str()) {
                names.push(&a.name);
            }
        }
        let mut m = s.serialize_map(Some(names.len()))?;
        for name in names {
            let values: Vec<&AttrValue> = t
                .attrs
                .iter()
                .filter(|a| a.name == name)
                .map(|a| &a.value)
                .collect();
            if values.len() == 1 {
                m.serialize_entry(name, &ValueJson(values[0]))?;
            } else {
                m.serialize_entry(name, &Several(values))?;
            }
        }
        m.end()
    }

    /// One JSON value of a template attribute.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum JsonValue {
        Single(String),
        Vector(indexmap_like::OrderedMap),
        Several(Vec<JsonOne>),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum JsonOne {
        Single(String),
        Vector(indexmap_like::OrderedMap),
    }

    mod indexmap_like {
        use serde::de::{MapAccess, Visitor};
        use serde::{Deserialize, Deserializer};
        use std::fmt;

        /// A JSON object of strings, keeping its order.
        pub struct OrderedMap(pub Vec<(String, String)>);

        impl<'de> Deserialize<'de> for OrderedMap {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = OrderedMap;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("an object of strings")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut m: A,
                    ) -> Result<OrderedMap, A::Error> {
                        let mut out = Vec::new();
                        while let Some((k, v)) = m.next_entry::<String, String>()? {
                            out.push((k, v));
                        }
                        Ok(OrderedMap(out))
                    }
                }
                d.deserialize_map(V)
            }
        }
    }

    fn vector(m: indexmap_like::OrderedMap) -> AttrValue {
        AttrValue::Vector(Vector { attrs: m.0 })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Template;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a template object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Template, A::Error> {
                let mut t = Template::default();
                while let Some(name) = m.next_key::<String>()? {
                    let push = |t: &mut Template, value| {
                        t.attrs.push(Attribute {
                            name: name.clone(),
                            value,
                        })
                    };
                    match m.next_value::<JsonValue>()? {
                        JsonValue::Single(s) => push(&mut t, AttrValue::Single(s)),
                        JsonValue::Vector(v) => push(&mut t, vector(v)),
                        JsonValue::Several(items) => {
                            if items.is_empty() {
                                return Err(de::Error::custom(format!(
                                    "attribute {name}: an empty array holds no value"
                                )));
                            }
                            for item in items {
                                match item {
                                    JsonOne::Single(s) => push(&mut t, AttrValue::Single(s)),
                                    JsonOne::Vector(v) => push(&mut t, vector(v)),
                                }
                            }
                        }
                    }
                }
                Ok(t)
            }
        }
        d.deserialize_map(V)
    }
}

/// serde for a [`Vector`] as a JSON object of strings (`{"IMAGE_ID": "3"}`), keeping order.
/// Use as `#[serde(with = "oca::serde_vector")]`.
pub mod serde_vector {
    use super::Vector;
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &Vector, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.attrs.len()))?;
        for (k, val) in &v.attrs {
            m.serialize_entry(k, val)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vector, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vector;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Vector, A::Error> {
                let mut attrs = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    attrs.push((k, v));
                }
                Ok(Vector { attrs })
            }
        }
        d.deserialize_map(V)
    }
}

/// serde for a list of [`Vector`]s as a JSON array of objects.
/// Use as `#[serde(with = "oca::serde_vectors")]`.
pub mod serde_vectors {
    use super::Vector;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Item(#[serde(with = "super::serde_vector")] Vector);

    pub fn serialize<S: Serializer>(v: &[Vector], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| Item(x.clone())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vector>, D::Error> {
        Ok(Vec::<Item>::deserialize(d)?
            .into_iter()
            .map(|i| i.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dom::Document;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Wrap {
        #[serde(with = "serde_template")]
        t: Template,
    }

    #[test]
    fn reads_singles_and_vectors_in_order() {
        let doc = Document::parse(
            "<TEMPLATE><CPU>1</CPU><DISK><IMAGE_ID>3</IMAGE_ID></DISK><NEW_THING>x</NEW_THING>\
             <DISK><IMAGE_ID>4</IMAGE_ID></DISK><EMPTY/></TEMPLATE>",
        )
        .unwrap();
        let t = from_element(doc.root());
        assert_eq!(t.get("CPU"), Some("1"));
        assert_eq!(t.get("NEW_THING"), Some("x"));
        assert_eq!(t.get("EMPTY"), Some(""));
        let disks: Vec<_> = t.vectors("DISK").map(|v| v.get("IMAGE_ID")).collect();
        assert_eq!(disks, [Some("3"), Some("4")]);
        assert_eq!(t.attrs[2].name, "NEW_THING");
    }

    #[test]
    fn json_round_trip() {
        let t =
            Template::parse("CPU=1\nDISK=[IMAGE_ID=3]\nDISK=[IMAGE_ID=4,SIZE=5]\nNAME=x").unwrap();
        let json = serde_json::to_string(&Wrap { t: t.clone() }).unwrap();
        assert_eq!(
            json,
            r#"{"t":{"CPU":"1","DISK":[{"IMAGE_ID":"3"},{"IMAGE_ID":"4","SIZE":"5"}],"NAME":"x"}}"#
        );
        let back: Wrap = serde_json::from_str(&json).unwrap();
        // Repeated names come back together, in their order.
        assert_eq!(back.t.vectors("DISK").count(), 2);
        assert_eq!(back.t.get("NAME"), Some("x"));
        assert!(serde_json::from_str::<Wrap>(r#"{"t":{"A":[]}}"#).is_err());
        assert!(serde_json::from_str::<Wrap>(r#"{"t":{"A":{"B":{"C":"1"}}}}"#).is_err());
    }
}
