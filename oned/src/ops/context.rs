//! VM context variables that read the pools (`$USER[...]`, `$NETWORK[...]`, `$IMAGE[...]`,
//! the ETHn_* network context): used when a VM is allocated (`api/vm.rs`) and when a NIC
//! hotplug ends (`lcm/hotplug.rs`).

use crate::context::{self, Lookup, Scope};
use crate::store::{State, Txn};
use one_proto::objects::vm::Vm;
use one_proto::template::Template;

/// What `$USER[...]`, `$NETWORK[...]` and `$IMAGE[...]` read, from the committed pools (the
/// attributes they read do not change within an allocation).
pub struct StateLookup<'s> {
    pub state: &'s State,
}

fn template_b64(t: &Template) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(t.to_xml("TEMPLATE"))
}

impl Lookup for StateLookup<'_> {
    fn user_attr(&self, uid: i64, attr: &str) -> Option<String> {
        let u = self.state.users.get(uid)?;
        if attr == "TEMPLATE" {
            return Some(template_b64(&u.template));
        }
        u.template.get(attr).map(str::to_string)
    }

    fn vnet_attr(&self, vnet_id: i64, ar_id: i64, attr: &str) -> Option<String> {
        let n = self.state.vnets.get(vnet_id)?;
        if attr == "TEMPLATE" {
            return Some(template_b64(&n.template));
        }
        n.ar(ar_id)
            .and_then(|ar| ar.attrs.get(attr))
            .filter(|v| !v.is_empty())
            .or_else(|| n.template.get(attr))
            .map(str::to_string)
    }

    fn image_attr(&self, image_id: i64, attr: &str) -> Option<String> {
        let i = self.state.images.get(image_id)?;
        if attr == "TEMPLATE" {
            return Some(template_b64(&i.template));
        }
        i.template.get(attr).map(str::to_string)
    }
}

/// Keeps the ETHn_* variables of the VM's CONTEXT (NETWORK = "YES") in line with its NICs,
/// as OpenNebula regenerates the network context: after a NIC attach every NIC's variables
/// are set again (the new one's added); `detached` removes one NIC's variables (ETHn_* and
/// its aliases' ETHn_ALIASm_*). The context CD is rewritten by the driver afterwards.
pub fn refresh_network_context(tx: &Txn<'_>, vm: &mut Vm, detached: Option<i64>) {
    let Some(mut ctx) = vm.template.vector("CONTEXT").cloned() else {
        return;
    };
    if !context::is_yes(ctx.get("NETWORK")) {
        return;
    }
    if let Some(id) = detached {
        let prefix = format!("ETH{id}_");
        ctx.attrs.retain(|(k, _)| !k.starts_with(&prefix));
    } else {
        let state = tx.committed();
        let lookup = StateLookup { state: &state };
        let snapshot = vm.clone();
        let document = || Vm::to_xml(&snapshot);
        let scope = Scope {
            vmid: vm.header.id,
            name: &snapshot.header.name,
            uid: snapshot.header.uid,
            uname: &snapshot.header.uname,
            gid: snapshot.header.gid,
            gname: &snapshot.header.gname,
            template: &snapshot.template,
            user_template: &snapshot.user_template,
            lookup: &lookup,
            document: &document,
        };
        context::add_network_context(&mut ctx, &scope);
    }
    if let Some(c) = vm.template.vector_mut("CONTEXT") {
        *c = ctx;
    }
}
