//! The XML document of each object kind, as its `info` call answers it, and the body its
//! pool listing uses. The API and the hooks (which pass objects' documents to commands)
//! both write them; this module sits below both.

use one_proto::objects::cluster::Cluster;
use one_proto::objects::datastore::Datastore;
use one_proto::objects::group::Group;
use one_proto::objects::hook::Hook;
use one_proto::objects::host::Host;
use one_proto::objects::image::Image;
use one_proto::objects::quota::Quotas;
use one_proto::objects::secgroup::SecurityGroup;
use one_proto::objects::user::User;
use one_proto::objects::vm::Vm;
use one_proto::objects::vmtemplate::VmTemplate;
use one_proto::objects::vnet::Vnet;
use one_proto::xml::XmlWriter;

/// An object's documents.
pub trait Document {
    /// The full document (info calls).
    fn write_xml(&self, w: &mut XmlWriter);
    /// The body used in pool listings (defaults to the full document).
    fn write_pool_xml(&self, w: &mut XmlWriter) {
        self.write_xml(w);
    }
    fn to_xml(&self) -> String {
        let mut w = XmlWriter::new();
        self.write_xml(&mut w);
        w.finish()
    }
}

impl Document for Cluster {
    fn write_xml(&self, w: &mut XmlWriter) {
        Cluster::write_xml(self, w)
    }
}

impl Document for Datastore {
    fn write_xml(&self, w: &mut XmlWriter) {
        Datastore::write_xml(self, w)
    }
}

impl Document for Group {
    /// The document with empty DEFAULT_GROUP_QUOTAS: the trait cannot reach the stored
    /// defaults, so `one.group.info` and the pool listing write theirs in `api/group.rs`.
    fn write_xml(&self, w: &mut XmlWriter) {
        Group::write_xml(self, w, &Quotas::default())
    }
    fn write_pool_xml(&self, w: &mut XmlWriter) {
        Group::write_pool_xml(self, w)
    }
}

impl Document for Hook {
    /// `one.hook.info` includes the execution records.
    fn write_xml(&self, w: &mut XmlWriter) {
        Hook::write_xml(self, w, true)
    }
    /// `one.hookpool.info` does not.
    fn write_pool_xml(&self, w: &mut XmlWriter) {
        Hook::write_xml(self, w, false)
    }
}

impl Document for Host {
    fn write_xml(&self, w: &mut XmlWriter) {
        Host::write_xml(self, w)
    }
}

impl Document for Image {
    fn write_xml(&self, w: &mut XmlWriter) {
        Image::write_xml(self, w)
    }
}

impl Document for SecurityGroup {
    fn write_xml(&self, w: &mut XmlWriter) {
        SecurityGroup::write_xml(self, w)
    }
}

impl Document for User {
    /// The document with empty DEFAULT_USER_QUOTAS: the trait cannot reach the stored
    /// defaults, so `one.user.info` and the pool listing write theirs with `api::user::user_xml`.
    fn write_xml(&self, w: &mut XmlWriter) {
        User::write_xml(self, w, &Quotas::default())
    }
    fn write_pool_xml(&self, w: &mut XmlWriter) {
        User::write_pool_xml(self, w)
    }
}

impl Document for Vm {
    /// The extended pool body (last HISTORY record only); `one.vm.info` uses `Vm::write_xml`.
    fn write_xml(&self, w: &mut XmlWriter) {
        self.write_extended_xml(w);
    }
    fn write_pool_xml(&self, w: &mut XmlWriter) {
        self.write_short_xml(w);
    }
}

impl Document for VmTemplate {
    fn write_xml(&self, w: &mut XmlWriter) {
        VmTemplate::write_xml(self, w)
    }
}

impl Document for Vnet {
    fn write_xml(&self, w: &mut XmlWriter) {
        Vnet::write_xml(self, w, Some(&|_| true));
    }
    /// Pool listings leave the leases out (OpenNebula lists the stored body, without them).
    fn write_pool_xml(&self, w: &mut XmlWriter) {
        Vnet::write_xml(self, w, None);
    }
}
