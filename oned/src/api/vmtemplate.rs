//! one.template.* / one.templatepool.info: VM templates.

use super::common::{self, ApiObject, authorize, authorize_create, check_lock, commit};
use super::image::{clone_in, delete_in, detail, disk_image_id};
use super::{ApiResult, Call, Params, Registry, errors::*, ok_id};
use crate::store::{Kind, Txn};
use one_proto::ApiError;
use one_proto::acl::{AuthOp, ObjectType};
use one_proto::objects::image::Image;
use one_proto::objects::user::User;
use one_proto::objects::vmtemplate::VmTemplate;
use one_proto::objects::{Header, Permissions};
use one_proto::template::{AttrValue, Template};
use std::collections::BTreeSet;

impl ApiObject for VmTemplate {
    const OBJNAME: &'static str = "virtual machine template";
    const POOL_ROOT: &'static str = "VMTEMPLATE_POOL";
    const ACL_TYPE: ObjectType = ObjectType::Template;

    crate::owned_header!();
    fn user_template_mut(&mut self) -> &mut Template {
        &mut self.template
    }
}

pub fn register(r: &mut Registry) {
    use common as c;
    r.add(
        "one.template.allocate",
        |call: Call, p: Params| async move { allocate_template(&call, p.str(0)?).await },
    );
    // extended (param 2) would add image details to DISKs; the plain body is returned.
    r.add("one.template.info", |call: Call, p: Params| async move {
        c::info::<VmTemplate>(&call, p.int32(0)?)
    });
    r.add("one.template.update", |call: Call, p: Params| async move {
        c::update::<VmTemplate>(&call, p.int32(0)?, p.str(1)?, p.opt_int(2, 0)?).await
    });
    r.add("one.template.rename", |call: Call, p: Params| async move {
        c::rename_owned::<VmTemplate>(&call, p.int32(0)?, p.str(1)?).await
    });
    r.add("one.template.chown", |call: Call, p: Params| async move {
        c::chown::<VmTemplate>(&call, p.int32(0)?, p.int32(1)?, p.int32(2)?).await
    });
    r.add("one.template.chmod", |call: Call, p: Params| async move {
        chmod(
            &call,
            p.int32(0)?,
            c::chmod_bits(&p, 1)?,
            p.opt_bool(10, false)?,
        )
        .await
    });
    r.add("one.template.lock", |call: Call, p: Params| async move {
        c::lock::<VmTemplate>(&call, p.int32(0)?, p.int32(1)?, p.opt_bool(2, false)?).await
    });
    r.add("one.template.unlock", |call: Call, p: Params| async move {
        c::unlock::<VmTemplate>(&call, p.int32(0)?).await
    });
    r.add(
        "one.templatepool.info",
        |call: Call, p: Params| async move {
            c::pool_info::<VmTemplate>(
                &call,
                p.opt_int(0, -2)?,
                p.opt_int(1, -1)?,
                p.opt_int(2, -1)?,
            )
        },
    );
    r.add("one.template.clone", |call: Call, p: Params| async move {
        clone(&call, p.int32(0)?, p.str(1)?, p.opt_bool(2, false)?).await
    });
    r.add("one.template.delete", |call: Call, p: Params| async move {
        delete(&call, p.int32(0)?, p.opt_bool(1, false)?).await
    });
    r.add(
        "one.template.instantiate",
        |call: Call, p: Params| async move {
            instantiate(
                &call,
                p.int32(0)?,
                p.opt_str(1, "")?,
                p.opt_bool(2, false)?,
                p.opt_str(3, "")?,
                p.opt_bool(4, false)?,
            )
            .await
        },
    );
}

fn new_header(call: &Call, tx: &Txn<'_>, id: i64, name: &str) -> Header {
    let uname = tx
        .get::<User>(call.session.uid)
        .map(|u| u.name)
        .unwrap_or_else(|| call.session.uname.clone());
    Header {
        id,
        uid: call.session.uid,
        gid: call.session.gid,
        uname,
        gname: call.session.gname.clone(),
        name: name.to_string(),
        perms: Permissions::from_umask(call.oned.config.umask()),
        lock: None,
    }
}

fn name_taken(tx: &Txn<'_>, name: &str, uid: i64) -> Option<i64> {
    common::name_taken_by_owner::<VmTemplate>(tx, name, uid, -1)
}

async fn allocate_template(call: &Call, text: &str) -> ApiResult {
    let m = call.method;
    let alloc_err = |msg: &str| allocate(m, VmTemplate::OBJNAME, msg);
    let mut template = common::parse_template(call, text)?;
    let name = template.get("NAME").unwrap_or("").to_string();
    // OpenNebula keeps the name in the object, not in its template.
    template.remove("NAME");
    common::check_name(&name).map_err(|e| alloc_err(&e))?;

    let mut tx = call.oned.store.begin().await;
    authorize_create(call, &tx.committed(), ObjectType::Template)?;
    if let Some(other) = name_taken(&tx, &name, call.session.uid) {
        return Err(alloc_err(&format!(
            "NAME is already taken by TEMPLATE {other}."
        )));
    }
    let id = tx.next_id(Kind::VmTemplate);
    let t = VmTemplate {
        header: new_header(call, &tx, id, &name),
        regtime: crate::auth::now_secs(),
        template,
    };
    tx.put(t);
    commit(call, tx).await?;
    tracing::info!(template = id, name, "VM template allocated");
    ok_id(id)
}

/// The image ids a template's DISKs name (resolving IMAGE names for `uid`), each once.
fn template_image_ids(tx: &Txn<'_>, t: &VmTemplate, uid: i64) -> BTreeSet<i64> {
    t.template
        .vectors("DISK")
        .filter_map(|d| disk_image_id(&tx.committed(), d, uid))
        .collect()
}

async fn clone(call: &Call, id: i64, name: &str, recursive: bool) -> ApiResult {
    let m = call.method;
    let alloc_err = |msg: &str| allocate(m, VmTemplate::OBJNAME, msg);
    let mut tx = call.oned.store.begin().await;
    let src: VmTemplate = tx
        .get(id)
        .ok_or_else(|| no_exists(m, VmTemplate::OBJNAME, id))?;
    {
        let state = tx.committed();
        authorize(call, &state, &src, AuthOp::Use)?;
        authorize_create(call, &state, ObjectType::Template)?;
    }
    check_lock(call, &src, AuthOp::Use)?;
    common::check_name(name).map_err(|e| alloc_err(&e))?;
    if let Some(other) = name_taken(&tx, name, call.session.uid) {
        return Err(alloc_err(&format!(
            "NAME is already taken by TEMPLATE {other}."
        )));
    }
    let new_id = tx.next_id(Kind::VmTemplate);
    let mut template = src.template.clone();
    template.remove("NAME");

    let mut cloned = Vec::new();
    if recursive {
        // Every DISK counts in the new images' names, as in OpenNebula ("<name>-disk-<n>").
        let uid = call.session.uid;
        let mut ndisk = 0;
        for attr in template.attrs.iter_mut() {
            if !attr.name.eq_ignore_ascii_case("DISK") {
                continue;
            }
            let AttrValue::Vector(disk) = &mut attr.value else {
                continue;
            };
            // The read guard ends here: the clone below writes through `tx`.
            let img_id = disk_image_id(&tx.committed(), disk, uid);
            if let Some(img_id) = img_id {
                let img_name = format!("{name}-disk-{ndisk}");
                let new_img = clone_in(&mut tx, call, img_id, &img_name, -1, None)
                    .map_err(|e| action(m, &format!("Failed to clone images: {}", detail(&e))))?;
                for a in ["IMAGE", "IMAGE_UNAME", "IMAGE_UID", "OPENNEBULA_MANAGED"] {
                    disk.remove(a);
                }
                disk.set("IMAGE_ID", new_img.to_string());
                cloned.push(new_img);
            }
            ndisk += 1;
        }
        tracing::info!(template = new_id, images = ?cloned, "template images being cloned");
    }

    let t = VmTemplate {
        header: new_header(call, &tx, new_id, name),
        regtime: crate::auth::now_secs(),
        template,
    };
    tx.put(t);
    commit(call, tx).await?;
    for img in cloned {
        crate::storage::image::run(&call.oned, img);
    }
    tracing::info!(
        template = new_id,
        source = id,
        recursive,
        "VM template cloned"
    );
    ok_id(new_id)
}

async fn delete(call: &Call, id: i64, recursive: bool) -> ApiResult {
    let mut tx = call.oned.store.begin().await;
    let t: VmTemplate = common::get_for_change(call, &tx, id, AuthOp::Manage)?;
    let images = if recursive {
        template_image_ids(&tx, &t, call.session.uid)
    } else {
        BTreeSet::new()
    };
    tx.delete::<VmTemplate>(id);
    super::group::drop_rules_of(&mut tx, ObjectType::Template, id);
    // OpenNebula deletes the template even when some of its images cannot be deleted.
    let mut failed = Vec::new();
    let mut files = Vec::new();
    for iid in images {
        match delete_in(&mut tx, call, iid, false) {
            Ok(f) => files.extend(f),
            Err(e) => {
                tracing::warn!(template = id, image = iid, error = %e.message, "cannot delete template image");
                failed.push(iid);
            }
        }
    }
    commit(call, tx).await?;
    super::image::remove_files(call, files);
    tracing::info!(template = id, recursive, failed_images = ?failed, "VM template deleted");
    ok_id(id)
}

/// Applies chmod bits to one object inside `tx` (common::chmod's rules).
fn chmod_in<T: ApiObject>(
    call: &Call,
    tx: &mut Txn<'_>,
    id: i64,
    bits: [i64; 9],
) -> Result<(), ApiError> {
    let mut obj: T = common::get_for_change(call, tx, id, AuthOp::Manage)?;
    if [2usize, 5, 8].iter().any(|&i| bits[i] == 1) {
        authorize(call, &tx.committed(), &obj, AuthOp::Admin)?;
    }
    let h = obj
        .header_mut()
        .ok_or_else(|| internal(call.method, "object has no permissions"))?;
    for (i, b) in bits.iter().enumerate() {
        if *b >= 0 {
            h.perms.bits[i] = *b == 1;
        }
    }
    tx.put(obj);
    Ok(())
}

async fn chmod(call: &Call, id: i64, bits: [i64; 9], recursive: bool) -> ApiResult {
    let m = call.method;
    if bits.iter().any(|b| !(-1..=1).contains(b)) {
        return Err(rpc_api(m, "Permission values must be -1, 0 or 1."));
    }
    let mut tx = call.oned.store.begin().await;
    chmod_in::<VmTemplate>(call, &mut tx, id, bits)?;
    let mut failed = Vec::new();
    if recursive {
        let t: VmTemplate = tx
            .get(id)
            .ok_or_else(|| no_exists(m, VmTemplate::OBJNAME, id))?;
        for iid in template_image_ids(&tx, &t, call.session.uid) {
            if let Err(e) = chmod_in::<Image>(call, &mut tx, iid, bits) {
                tracing::warn!(template = id, image = iid, error = %e.message, "cannot chmod template image");
                failed.push(iid.to_string());
            }
        }
    }
    commit(call, tx).await?;
    if !failed.is_empty() {
        // As OpenNebula: the template and the other images keep their new permissions.
        return Err(action(
            m,
            &format!("Cannot chmod image: {}", failed.join(",")),
        ));
    }
    ok_id(id)
}

/// Builds the VM template of an instantiation: the template merged with `extra` (extra's
/// attributes replace the template's of the same name), TEMPLATE_NAME/TEMPLATE_ID set, and
/// NAME set only when the caller gave one (the VM code names it `<template NAME>-<vmid>`).
pub fn instantiation_template(t: &VmTemplate, name: &str, extra: &Template) -> Template {
    let mut tmpl = t.template.clone();
    tmpl.merge(extra);
    for a in ["NAME", "TEMPLATE_NAME", "TEMPLATE_ID"] {
        tmpl.remove(a);
    }
    tmpl.set("TEMPLATE_NAME", t.header.name.clone());
    tmpl.set("TEMPLATE_ID", t.header.id.to_string());
    if !name.is_empty() {
        tmpl.set("NAME", name);
    }
    tmpl
}

async fn instantiate(
    call: &Call,
    id: i64,
    name: &str,
    hold: bool,
    extra_text: &str,
    persistent: bool,
) -> ApiResult {
    let m = call.method;
    let t = common::get_authorized::<VmTemplate>(call, id, AuthOp::Use)?;
    if t.template
        .get("VROUTER")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("YES"))
    {
        return Err(action(m, "Virtual router templates cannot be instantiated"));
    }
    check_lock(call, &*t, AuthOp::Use)?;
    if persistent {
        return Err(action(
            m,
            "Persistent instantiation needs image cloning, which is not available yet: \
             instantiate without persistent, or clone the template with its images first",
        ));
    }
    let extra = if extra_text.trim().is_empty() {
        Template::new()
    } else {
        common::parse_template(call, extra_text)?
    };
    if !extra.is_empty() {
        // Extra attributes make a new template: the caller must be allowed to create one.
        authorize_create(call, &call.oned.store.read(), ObjectType::Template)?;
    }
    let tmpl = instantiation_template(&t, name, &extra);
    let vmid = super::vm::allocate_vm(call, tmpl, hold, Some((id, name.to_string()))).await?;
    tracing::info!(template = id, vm = vmid, hold, "VM template instantiated");
    ok_id(vmid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpl(id: i64, name: &str, text: &str) -> VmTemplate {
        VmTemplate {
            header: Header::oneadmin(id, name),
            regtime: 0,
            template: Template::parse(text).unwrap(),
        }
    }

    #[test]
    fn extra_attributes_replace_and_template_ids_are_set() {
        let t = tmpl(
            3,
            "web",
            "CPU=1\nMEMORY=128\nDISK=[IMAGE_ID=1]\nDISK=[IMAGE_ID=2]\nTEMPLATE_ID=99\nNAME=old",
        );
        let extra = Template::parse("MEMORY=512\nDISK=[IMAGE_ID=7]\nCONTEXT=[A=b]").unwrap();
        let out = instantiation_template(&t, "", &extra);
        assert_eq!(out.get("CPU"), Some("1"));
        assert_eq!(out.get("MEMORY"), Some("512"));
        let disks: Vec<_> = out
            .vectors("DISK")
            .map(|d| d.get("IMAGE_ID").unwrap())
            .collect();
        assert_eq!(
            disks,
            vec!["7"],
            "extra DISKs replace all the template's DISKs"
        );
        assert_eq!(out.vector("CONTEXT").unwrap().get("A"), Some("b"));
        assert_eq!(out.get("TEMPLATE_ID"), Some("3"));
        assert_eq!(out.get("TEMPLATE_NAME"), Some("web"));
        assert!(!out.contains("NAME"), "the VM code picks the default name");

        let named = instantiation_template(&t, "my-vm", &Template::new());
        assert_eq!(named.get("NAME"), Some("my-vm"));
        assert_eq!(named.vectors("DISK").count(), 2);
    }
}
