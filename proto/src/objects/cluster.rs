//! CLUSTER documents (cluster.xsd).

use super::write_ids;
use crate::template::Template;
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: i64,
    pub name: String,
    pub hosts: Vec<i64>,
    pub datastores: Vec<i64>,
    pub vnets: Vec<i64>,
    pub template: Template,
}

impl Cluster {
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("CLUSTER")
            .num("ID", self.id)
            .text("NAME", &self.name);
        write_ids(w, "HOSTS", &self.hosts);
        write_ids(w, "DATASTORES", &self.datastores);
        write_ids(w, "VNETS", &self.vnets);
        self.template.write_xml(w, "TEMPLATE");
        w.close("CLUSTER");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_shape() {
        let mut template = Template::new();
        template.set("RESERVED_CPU", "");
        let c = Cluster {
            id: 0,
            name: "default".into(),
            hosts: vec![1, 2],
            datastores: vec![0, 1, 2],
            vnets: vec![],
            template,
        };
        let mut w = XmlWriter::new();
        c.write_xml(&mut w);
        assert_eq!(
            w.finish(),
            "<CLUSTER><ID>0</ID><NAME>default</NAME><HOSTS><ID>1</ID><ID>2</ID></HOSTS>\
             <DATASTORES><ID>0</ID><ID>1</ID><ID>2</ID></DATASTORES><VNETS/>\
             <TEMPLATE><RESERVED_CPU></RESERVED_CPU></TEMPLATE></CLUSTER>"
        );
    }
}
