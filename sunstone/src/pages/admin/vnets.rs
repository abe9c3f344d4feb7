//! Virtual networks (administrators): every network, and creating one with the bridge,
//! 802.1Q or VXLAN driver and a first address range. A network's page (address ranges,
//! leases) is networks.rs.

use crate::pages::networks::{ar_template, table};
use crate::web::{Ctx, Failure, PageResult, num};
use axum::Form;
use maud::html;
use oca::{PoolFilter, PoolRange, Template};
use serde::Deserialize;

pub const DRIVERS: &[(&str, &str)] = &[
    ("bridge", "Bridge (an existing or new Linux bridge)"),
    ("802.1Q", "802.1Q VLAN on a physical device"),
    ("vxlan", "VXLAN over a physical device"),
];

/// `GET /admin/vnets`.
pub async fn list(ctx: Ctx) -> PageResult {
    let c = ctx.oned();
    let (nets, clusters) = tokio::join!(
        async { c.vnet().list(PoolFilter::All, PoolRange::default()).await },
        async { c.cluster().list().await }
    );
    let nets = nets?;
    let clusters = clusters.unwrap_or_default();
    let content = html! {
        h1 { "Virtual networks" }
        (table(&nets))
        div.card {
            h2 { "New virtual network" }
            form.stack #new-vnet method="post" action="admin/vnets" {
                (ctx.csrf_field())
                label { "Name" input type="text" name="name" required; }
                label { "Driver" select name="driver" { @for (v, l) in DRIVERS { option value=(v) { (l) } } } }
                label { "Bridge (empty: a name chosen by the driver)" input type="text" name="bridge" placeholder="br0"; }
                label { "Physical device (802.1Q, VXLAN)" input type="text" name="phydev" placeholder="eth0"; }
                label { "VLAN id / VNI (802.1Q, VXLAN; empty: automatic)" input type="number" name="vlan_id" min="1" max="16777215"; }
                fieldset {
                    legend { "First address range" }
                    label { "Type" select name="ar_type" { option value="IP4" { "IPv4" } option value="ETHER" { "Ethernet only" } } }
                    label { "First IP" input type="text" name="ip" placeholder="10.0.0.10"; }
                    label { "Size" input type="number" name="size" min="1" value="100" required; }
                }
                label { "Network address" input type="text" name="network_address" placeholder="10.0.0.0"; }
                label { "Network mask" input type="text" name="network_mask" placeholder="255.255.255.0"; }
                label { "Gateway" input type="text" name="gateway" placeholder="10.0.0.1"; }
                label { "DNS" input type="text" name="dns" placeholder="10.0.0.1"; }
                label { "Cluster" select name="cluster" { @for c in &clusters { option value=(c.id) { (c.name) } } } }
                button.primary type="submit" { "Create network" }
            }
        }
    };
    Ok(ctx.page("Virtual networks", content))
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct NewVnet {
    pub name: String,
    pub driver: String,
    pub bridge: String,
    pub phydev: String,
    pub vlan_id: String,
    pub ar_type: String,
    pub ip: String,
    pub size: String,
    pub network_address: String,
    pub network_mask: String,
    pub gateway: String,
    pub dns: String,
    pub cluster: String,
}

/// The network template of the form.
pub fn vnet_template(f: &NewVnet) -> Result<Template, Failure> {
    if !DRIVERS.iter().any(|(d, _)| *d == f.driver) {
        return Err(Failure::bad_request(format!(
            "Unknown network driver {:?}",
            f.driver
        )));
    }
    if f.name.trim().is_empty() {
        return Err(Failure::bad_request("The network needs a name."));
    }
    if f.driver != "bridge" && f.phydev.trim().is_empty() {
        return Err(Failure::bad_request(format!(
            "The {} driver needs a physical device.",
            f.driver
        )));
    }
    let mut t = Template::new();
    t.set("NAME", f.name.trim());
    t.set("VN_MAD", f.driver.as_str());
    for (k, v) in [
        ("BRIDGE", &f.bridge),
        ("PHYDEV", &f.phydev),
        ("NETWORK_ADDRESS", &f.network_address),
        ("NETWORK_MASK", &f.network_mask),
        ("GATEWAY", &f.gateway),
        ("DNS", &f.dns),
    ] {
        if !v.trim().is_empty() {
            t.set(k, v.trim());
        }
    }
    if f.driver != "bridge" {
        if f.vlan_id.trim().is_empty() {
            t.set("AUTOMATIC_VLAN_ID", "YES");
        } else {
            let id: u32 = num("VLAN id", &f.vlan_id)?;
            t.set("VLAN_ID", id.to_string());
        }
    }
    let ar = ar_template(
        if f.ar_type.is_empty() {
            "IP4"
        } else {
            &f.ar_type
        },
        &f.ip,
        &f.size,
    )?;
    t.merge(&ar);
    Ok(t)
}

/// `POST /admin/vnets`.
pub async fn create(ctx: Ctx, Form(f): Form<NewVnet>) -> PageResult {
    let t = vnet_template(&f)?;
    let cluster: i64 = if f.cluster.is_empty() {
        -1
    } else {
        num("cluster", &f.cluster)?
    };
    Ok(
        match ctx.oned().vnet().allocate(&t.to_text(), cluster).await {
            Ok(id) => ctx.redirect_ok(&format!("networks/{id}"), format!("Network {id} created.")),
            Err(e) => ctx.redirect_err("admin/vnets", e),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_of_each_driver() {
        let mut f = NewVnet {
            name: "lan".into(),
            driver: "vxlan".into(),
            phydev: "eth1".into(),
            ar_type: "IP4".into(),
            ip: "10.1.0.10".into(),
            size: "20".into(),
            gateway: "10.1.0.1".into(),
            ..Default::default()
        };
        let t = vnet_template(&f).unwrap();
        assert_eq!(t.get("VN_MAD"), Some("vxlan"));
        assert_eq!(t.get("AUTOMATIC_VLAN_ID"), Some("YES"));
        assert_eq!(t.vector("AR").unwrap().get("IP"), Some("10.1.0.10"));
        assert_eq!(t.vector("AR").unwrap().get("SIZE"), Some("20"));
        f.vlan_id = "46".into();
        f.driver = "802.1Q".into();
        assert_eq!(vnet_template(&f).unwrap().get("VLAN_ID"), Some("46"));
        f.phydev.clear();
        assert!(vnet_template(&f).is_err(), "802.1Q without a device");
        f.driver = "bridge".into();
        f.bridge = "br0".into();
        let t = vnet_template(&f).unwrap();
        assert_eq!(t.get("VLAN_ID"), None);
        assert_eq!(t.get("BRIDGE"), Some("br0"));
        f.ip = "10.1.0".into();
        assert!(vnet_template(&f).is_err(), "a bad IP");
        f.driver = "ovs; rm".into();
        assert!(vnet_template(&f).is_err());
    }
}
