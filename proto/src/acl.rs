//! ACL rules: OpenNebula's `one.acl.*` wire forms and the pure rule-matching logic.
//!
//! A rule is four 64-bit words, exactly as oned stores them:
//!
//! ```text
//!   USER      [ selector bits | uid or gid        ]   #uid, @gid or *
//!   RESOURCE  [ type bits | selector bits | id    ]   VM+IMAGE/#id, /@gid, /%cid or /*
//!   RIGHTS    [ USE 0x1 | MANAGE 0x2 | ADMIN 0x4 | CREATE 0x8 ]
//!   ZONE      [ selector bits | zone id           ]   #zone or *
//! ```
//!
//! The low 32 bits hold the id, bits 32..35 the selector ([`INDIVIDUAL_ID`] `#`,
//! [`GROUP_ID`] `@`, [`ALL_ID`] `*`, [`CLUSTER_ID`] `%`), and for RESOURCE the bits from 36
//! up are the object types ([`ObjectType::bit`]).
//!
//! The forms a rule travels in:
//! * the CLI string `USER RESOURCE RIGHTS [ZONE]` (`oneacl create`), read by
//!   [`AclRule::parse_rule_string`] and written by [`AclRule::to_rule_string`] (the `STRING`
//!   element of `one.acl.info`);
//! * four hex strings, the parameters of `one.acl.addrule`, read by [`AclRule::from_hex`]
//!   (which also runs oned's malformed-rule checks) and written by [`AclRule::to_hex`];
//! * the `<ACL>` element of `<ACL_POOL>` ([`AclRule::write_xml`], [`write_pool_xml`]).
//!
//! Facts checked against OpenNebula 7.x (`include/PoolObjectSQL.h`, `src/acl/AclRule.cc`,
//! `src/acl/AclManager.cc`, `src/group/Group.cc`, `src/rm/RequestLogger.cc`, the Ruby/Python/Go
//! OCA `acl` modules).

use crate::error::ErrorCode;
use crate::xml::XmlWriter;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Selector bit `#id`: one user, one object, one zone.
pub const INDIVIDUAL_ID: u64 = 0x0000_0001_0000_0000;
/// Selector bit `@gid`: members of a group (USER) or objects owned by a group (RESOURCE).
pub const GROUP_ID: u64 = 0x0000_0002_0000_0000;
/// Selector bit `*`: everyone / every object / every zone. The id part must be 0.
pub const ALL_ID: u64 = 0x0000_0004_0000_0000;
/// Selector bit `%cid`: objects in a cluster (RESOURCE of HOST, NET, DATASTORE only).
pub const CLUSTER_ID: u64 = 0x0000_0008_0000_0000;
/// The id part of a USER, RESOURCE or ZONE word.
pub const ID_MASK: u64 = 0x0000_0000_FFFF_FFFF;
/// All four selector bits.
pub const SELECTOR_MASK: u64 = 0x0000_000F_0000_0000;
/// The object-type part of a RESOURCE word.
pub const TYPE_MASK: u64 = 0xFFFF_FFF0_0000_0000;
/// RESOURCE bits oned refuses ("wrong [resource] type"): HOOK and everything above BACKUPJOB.
const INVALID_TYPE_BITS: u64 = 0xFE80_0000_0000_0000;
/// The zone this cloud is (OpenNebula's default single zone, `#0`).
pub const LOCAL_ZONE_ID: u32 = 0;

macro_rules! object_types {
    ($($variant:ident = $bit:expr => $name:expr, $obj:expr, $acl:expr;)+) => {
        /// OpenNebula's `PoolObjectSQL::ObjectType`: the kinds of pool object, each with its
        /// RESOURCE bit in ACL rules.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(u64)]
        pub enum ObjectType { $($variant = $bit),+ }

        impl ObjectType {
            /// Every type, in bit order.
            pub const ALL: &'static [ObjectType] = &[$(ObjectType::$variant),+];

            /// The RESOURCE bit of this type.
            pub fn bit(self) -> u64 {
                self as u64
            }

            /// The upper-case name used in rule strings and authorization messages
            /// (`PoolObjectSQL::type_to_str`): `VM`, `HOST`, `NET`, ...
            pub fn name(self) -> &'static str {
                match self { $(ObjectType::$variant => $name),+ }
            }

            /// The object name OpenNebula's API error messages use
            /// (`Error getting virtual machine [3].`).
            pub fn object_name(self) -> &'static str {
                match self { $(ObjectType::$variant => $obj),+ }
            }

            /// Whether the type can be named in an ACL rule. oned prints (and the OCAs accept)
            /// only these 19; `ACL` passes oned's checks but is never printed, `HOOK` and
            /// `SCHEDULEDACTION` are refused as "wrong [resource] type".
            pub fn is_acl_resource(self) -> bool {
                match self { $(ObjectType::$variant => $acl),+ }
            }

            /// The type of a [`name`](Self::name), ignoring case.
            pub fn from_name(s: &str) -> Option<Self> {
                ObjectType::ALL.iter().copied().find(|t| t.name().eq_ignore_ascii_case(s))
            }

            /// The type whose bit is exactly `bit`.
            pub fn from_bit(bit: u64) -> Option<Self> {
                ObjectType::ALL.iter().copied().find(|t| t.bit() == bit)
            }
        }
    };
}

object_types! {
    Vm              = 0x0000_0010_0000_0000 => "VM", "virtual machine", true;
    Host            = 0x0000_0020_0000_0000 => "HOST", "host", true;
    Net             = 0x0000_0040_0000_0000 => "NET", "virtual network", true;
    Image           = 0x0000_0080_0000_0000 => "IMAGE", "image", true;
    User            = 0x0000_0100_0000_0000 => "USER", "user", true;
    Template        = 0x0000_0200_0000_0000 => "TEMPLATE", "virtual machine template", true;
    Group           = 0x0000_0400_0000_0000 => "GROUP", "group", true;
    Acl             = 0x0000_0800_0000_0000 => "ACL", "ACL", false;
    Datastore       = 0x0000_1000_0000_0000 => "DATASTORE", "datastore", true;
    Cluster         = 0x0000_2000_0000_0000 => "CLUSTER", "cluster", true;
    Document        = 0x0000_4000_0000_0000 => "DOCUMENT", "document", true;
    Zone            = 0x0000_8000_0000_0000 => "ZONE", "zone", true;
    SecGroup        = 0x0001_0000_0000_0000 => "SECGROUP", "security group", true;
    Vdc             = 0x0002_0000_0000_0000 => "VDC", "VDC", true;
    VRouter         = 0x0004_0000_0000_0000 => "VROUTER", "virtual router", true;
    MarketPlace     = 0x0008_0000_0000_0000 => "MARKETPLACE", "marketplace", true;
    MarketPlaceApp  = 0x0010_0000_0000_0000 => "MARKETPLACEAPP", "marketplaceapp", true;
    VmGroup         = 0x0020_0000_0000_0000 => "VMGROUP", "vm group", true;
    VnTemplate      = 0x0040_0000_0000_0000 => "VNTEMPLATE", "virtual network template", true;
    Hook            = 0x0080_0000_0000_0000 => "HOOK", "hook", false;
    BackupJob       = 0x0100_0000_0000_0000 => "BACKUPJOB", "backup job", true;
    ScheduledAction = 0x0200_0000_0000_0000 => "SCHEDULEDACTION", "scheduled action", false;
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Types that oned refuses with the `%cid` selector (`INVALID_CLUSTER_OBJECTS`: all rule types
/// but HOST, NET, DATASTORE and, by omission in oned, BACKUPJOB).
const NOT_CLUSTER_SELECTABLE: u64 = ObjectType::Vm as u64
    | ObjectType::Image as u64
    | ObjectType::User as u64
    | ObjectType::Template as u64
    | ObjectType::Group as u64
    | ObjectType::Acl as u64
    | ObjectType::Cluster as u64
    | ObjectType::Document as u64
    | ObjectType::Zone as u64
    | ObjectType::SecGroup as u64
    | ObjectType::Vdc as u64
    | ObjectType::VRouter as u64
    | ObjectType::MarketPlace as u64
    | ObjectType::MarketPlaceApp as u64
    | ObjectType::VmGroup as u64
    | ObjectType::VnTemplate as u64;
/// Types that oned refuses with the `@gid` selector (objects without an owning group).
const NOT_GROUP_SELECTABLE: u64 = ObjectType::Host as u64
    | ObjectType::Group as u64
    | ObjectType::Cluster as u64
    | ObjectType::Zone as u64
    | ObjectType::Vdc as u64;
/// Types an `#id` selector may name in a rule for all zones (federation-wide objects).
const FEDERATED: u64 = ObjectType::User as u64
    | ObjectType::Group as u64
    | ObjectType::Zone as u64
    | ObjectType::Acl as u64
    | ObjectType::Vdc as u64;

/// An authorization operation (`AuthRequest::Operation`), also a RIGHTS bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u64)]
pub enum AuthOp {
    Use = 0x1,
    Manage = 0x2,
    Admin = 0x4,
    Create = 0x8,
}

impl AuthOp {
    /// In the order oned prints them.
    pub const ALL: &'static [AuthOp] =
        &[AuthOp::Use, AuthOp::Manage, AuthOp::Admin, AuthOp::Create];

    pub fn bit(self) -> u64 {
        self as u64
    }

    /// `USE`, `MANAGE`, `ADMIN`, `CREATE`.
    pub fn name(self) -> &'static str {
        match self {
            AuthOp::Use => "USE",
            AuthOp::Manage => "MANAGE",
            AuthOp::Admin => "ADMIN",
            AuthOp::Create => "CREATE",
        }
    }

    /// The operation of a name, ignoring case.
    pub fn from_name(s: &str) -> Option<Self> {
        AuthOp::ALL
            .iter()
            .copied()
            .find(|o| o.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for AuthOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The selector of a USER, RESOURCE or ZONE word, as written in rule strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdSpec {
    /// `#id`
    Individual(u32),
    /// `@gid`
    Group(u32),
    /// `%cid`
    Cluster(u32),
    /// `*`
    All,
}

impl IdSpec {
    /// The selector bit and id, to OR into a rule word.
    pub fn bits(self) -> u64 {
        match self {
            IdSpec::Individual(id) => INDIVIDUAL_ID | u64::from(id),
            IdSpec::Group(id) => GROUP_ID | u64::from(id),
            IdSpec::Cluster(id) => CLUSTER_ID | u64::from(id),
            IdSpec::All => ALL_ID,
        }
    }

    /// Reads `#n`, `@n`, `%n` or `*` (the OCAs' `^([#@%]\d+|\*)$`; ids must fit 32 bits).
    pub fn parse(s: &str) -> Option<IdSpec> {
        if s == "*" {
            return Some(IdSpec::All);
        }
        let mut chars = s.chars();
        let sel = chars.next()?;
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id: u32 = digits.parse().ok()?;
        match sel {
            '#' => Some(IdSpec::Individual(id)),
            '@' => Some(IdSpec::Group(id)),
            '%' => Some(IdSpec::Cluster(id)),
            _ => None,
        }
    }
}

/// Why a rule could not be read or accepted. The `Display` texts are OpenNebula's where oned
/// or the OCA has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// The CLI string form is wrong (the OCA's messages, several joined by ", ").
    #[error("{0}")]
    Syntax(String),
    /// An `one.acl.addrule` parameter is not a hexadecimal number.
    #[error("[{field}] '{value}' is not a hexadecimal number")]
    NotHex { field: &'static str, value: String },
    /// oned's `AclRule::malformed` checks failed; `rule` is the rule's string form.
    #[error("Rule {rule} is malformed: {}", .reasons.join("; "))]
    Malformed { rule: String, reasons: Vec<String> },
    /// The same USER/RESOURCE/RIGHTS/ZONE already exists (oned's add_rule message).
    #[error("Rule {rule} already exists")]
    Duplicate { rule: String },
    /// `one.acl.delrule` of an unknown id (oned's del_rule message).
    #[error("Rule {0} does not exist")]
    NotFound(i64),
}

impl AclError {
    /// The API error code oned answers these with: every `one.acl.addrule`/`delrule` failure
    /// is INTERNAL, the message being `[method] ` + this error's text.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

/// One ACL rule: its id and the four words oned stores (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclRule {
    pub id: i64,
    pub user: u64,
    pub resource: u64,
    pub rights: u64,
    pub zone: u64,
}

impl AsRef<AclRule> for AclRule {
    fn as_ref(&self) -> &AclRule {
        self
    }
}

/// The id part as oned prints it: a signed 32-bit int.
fn id_part(word: u64) -> i32 {
    (word & ID_MASK) as u32 as i32
}

/// Reads a hex word as oned's `istream >> hex` does for the OCAs' inputs: surrounding
/// whitespace, an optional `0x`/`0X` (pyone sends it, Ruby and Go do not), either case.
fn parse_hex(field: &'static str, s: &str) -> Result<u64, AclError> {
    let t = s.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AclError::NotHex {
            field,
            value: s.to_string(),
        });
    }
    u64::from_str_radix(digits, 16).map_err(|_| AclError::NotHex {
        field,
        value: s.to_string(),
    })
}

impl AclRule {
    pub fn new(id: i64, user: u64, resource: u64, rights: u64, zone: u64) -> Self {
        AclRule {
            id,
            user,
            resource,
            rights,
            zone,
        }
    }

    /// Reads the four `one.acl.addrule` parameters (hex, with or without `0x`) and runs
    /// [`validate`](Self::validate). `zone` `None` or empty means this zone, `#0`, as oned
    /// does. `id` is usually -1 here and set when the rule is stored.
    pub fn from_hex(
        id: i64,
        user: &str,
        resource: &str,
        rights: &str,
        zone: Option<&str>,
    ) -> Result<AclRule, AclError> {
        let user = parse_hex("user", user)?;
        let resource = parse_hex("resource", resource)?;
        let rights = parse_hex("rights", rights)?;
        let zone = match zone {
            Some(z) if !z.trim().is_empty() => parse_hex("zone", z)?,
            _ => INDIVIDUAL_ID | u64::from(LOCAL_ZONE_ID),
        };
        let rule = AclRule::new(id, user, resource, rights, zone);
        rule.validate()?;
        Ok(rule)
    }

    /// The four `one.acl.addrule` parameters: lower-case hex without `0x`, as the Ruby OCA
    /// sends them.
    pub fn to_hex(&self) -> [String; 4] {
        [
            format!("{:x}", self.user),
            format!("{:x}", self.resource),
            format!("{:x}", self.rights),
            format!("{:x}", self.zone),
        ]
    }

    /// Reads the CLI form `USER RESOURCE RIGHTS [ZONE]`, e.g. `@1 VM+IMAGE/* CREATE *`.
    ///
    /// * USER: `#uid`, `@gid` or `*`;
    /// * RESOURCE: `TYPE[+TYPE...]/SEL` with the 19 rule type names
    ///   ([`ObjectType::is_acl_resource`]) and SEL one of `#id`, `@gid`, `%cid`, `*`;
    /// * RIGHTS: `USE`, `MANAGE`, `ADMIN`, `CREATE` joined by `+`;
    /// * ZONE: `#id` or `*`; when absent, `#0` (this zone).
    ///
    /// Names ignore case; fields are separated by any whitespace. This checks syntax only,
    /// like the OCAs (oned's checks are [`validate`](Self::validate)). Unlike the OCAs, which
    /// add the values up, a name repeated (`VM+VM`) counts once. The id is -1.
    pub fn parse_rule_string(s: &str) -> Result<AclRule, AclError> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        if fields.len() != 3 && fields.len() != 4 {
            return Err(AclError::Syntax(
                "String needs three or four components: User, Resource, Rights [,Zone]".into(),
            ));
        }
        let mut errors = Vec::new();

        let user = match IdSpec::parse(fields[0]) {
            Some(spec @ (IdSpec::Individual(_) | IdSpec::Group(_) | IdSpec::All)) => spec.bits(),
            Some(IdSpec::Cluster(_)) => {
                errors.push(format!(
                    "User '{}' malformed, it must be #<uid>, @<gid> or *",
                    fields[0]
                ));
                0
            }
            None => {
                errors.push(format!("ID string '{}' malformed", fields[0]));
                0
            }
        };

        let resource = match parse_resource(fields[1]) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                0
            }
        };

        let mut rights = 0;
        for name in fields[2].split('+') {
            match AuthOp::from_name(name) {
                Some(op) => rights |= op.bit(),
                None => errors.push(format!("Right '{name}' does not exist")),
            }
        }

        let zone = match fields.get(3) {
            None => INDIVIDUAL_ID | u64::from(LOCAL_ZONE_ID),
            Some(z) => match IdSpec::parse(z) {
                Some(spec @ (IdSpec::Individual(_) | IdSpec::All)) => spec.bits(),
                Some(_) => {
                    errors.push(format!("Zone '{z}' malformed, it must be #<zone id> or *"));
                    0
                }
                None => {
                    errors.push(format!("ID string '{z}' malformed"));
                    0
                }
            },
        };

        if !errors.is_empty() {
            return Err(AclError::Syntax(errors.join(", ")));
        }
        Ok(AclRule::new(-1, user, resource, rights, zone))
    }

    /// The rule as oned shows it in `STRING` (`AclRule::build_str`), e.g.
    /// `@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *` or
    /// `#5 HOST/%0 USE+MANAGE #0`: types in [`ObjectType::ALL`] order (only the 19 rule
    /// types), rights in USE, MANAGE, ADMIN, CREATE order, ids as signed 32-bit numbers, a
    /// selector missing shows as `??`.
    pub fn to_rule_string(&self) -> String {
        let mut s = String::with_capacity(64);
        push_selector(&mut s, self.user, &[(GROUP_ID, '@'), (INDIVIDUAL_ID, '#')]);
        s.push(' ');
        let mut first = true;
        for t in ObjectType::ALL.iter().filter(|t| t.is_acl_resource()) {
            if self.resource & t.bit() != 0 {
                if !first {
                    s.push('+');
                }
                s.push_str(t.name());
                first = false;
            }
        }
        s.push('/');
        push_selector(
            &mut s,
            self.resource,
            &[(GROUP_ID, '@'), (INDIVIDUAL_ID, '#'), (CLUSTER_ID, '%')],
        );
        s.push(' ');
        first = true;
        for op in AuthOp::ALL {
            if self.rights & op.bit() != 0 {
                if !first {
                    s.push('+');
                }
                s.push_str(op.name());
                first = false;
            }
        }
        s.push(' ');
        push_selector(&mut s, self.zone, &[(INDIVIDUAL_ID, '#')]);
        s
    }

    /// The reasons oned's `AclRule::malformed` gives for this rule, in its order; empty when
    /// the rule is acceptable.
    pub fn malformed_reasons(&self) -> Vec<String> {
        let mut r: Vec<String> = Vec::new();
        let (user, resource, zone) = (self.user, self.resource, self.zone);

        // USER
        if user & INDIVIDUAL_ID != 0 && user & GROUP_ID != 0 {
            r.push("[user] INDIVIDUAL (#) and GROUP (@) bits are exclusive".into());
        }
        if user & INDIVIDUAL_ID != 0 && user & ALL_ID != 0 {
            r.push("[user] INDIVIDUAL (#) and ALL (*) bits are exclusive".into());
        }
        if user & GROUP_ID != 0 && user & ALL_ID != 0 {
            r.push("[user] GROUP (@) and ALL (*) bits are exclusive".into());
        }
        if user & (INDIVIDUAL_ID | GROUP_ID | ALL_ID) == 0 {
            r.push("[user] is missing one of the INDIVIDUAL, GROUP or ALL bits".into());
        }
        if id_part(user) < 0 {
            r.push("[user] ID cannot be negative".into());
        }
        if user & ALL_ID != 0 && id_part(user) != 0 {
            r.push("when using the ALL bit, [user] ID must be 0".into());
        }

        // RESOURCE
        let selectors = resource & SELECTOR_MASK;
        if [INDIVIDUAL_ID, GROUP_ID, CLUSTER_ID, ALL_ID]
            .iter()
            .any(|&bit| resource & bit != 0 && selectors != bit)
        {
            r.push(
                "[resource] INDIVIDUAL (#), GROUP (@), CLUSTER (%) and ALL (*) bits are exclusive"
                    .into(),
            );
        }
        let types = resource & TYPE_MASK;
        if resource & CLUSTER_ID != 0 && types & NOT_CLUSTER_SELECTABLE != 0 {
            r.push(
                "[resource] CLUSTER(%) selector can be applied only to DATASTORE, HOST and NET types"
                    .into(),
            );
        }
        if resource & GROUP_ID != 0 && types & NOT_GROUP_SELECTABLE != 0 {
            r.push(
                "[resource] GROUP(@) selector cannot be applied to HOST, GROUP, CLUSTER, ZONE or VDC types"
                    .into(),
            );
        }
        if selectors == 0 {
            r.push(
                "[resource] is missing one of the INDIVIDUAL, GROUP, CLUSTER or ALL bits".into(),
            );
        }
        if id_part(resource) < 0 {
            r.push("[resource] ID cannot be negative".into());
        }
        if resource & ALL_ID != 0 && id_part(resource) != 0 {
            r.push("when using the ALL bit, [resource] ID must be 0".into());
        }
        if types == 0 {
            r.push("[resource] type is missing".into());
        }
        if resource & INVALID_TYPE_BITS != 0 {
            r.push("wrong [resource] type".into());
        }

        // RIGHTS
        if self.rights == 0 {
            r.push("wrong [rights], it cannot be 0".into());
        }
        if self.rights > 0xF {
            r.push("wrong [rights], it cannot be bigger than 0xF".into());
        }

        // ZONE
        if zone & GROUP_ID != 0 {
            r.push("[zone] GROUP (@) bit is not supported".into());
        }
        if zone & INDIVIDUAL_ID != 0 && zone & ALL_ID != 0 {
            r.push("[zone] INDIVIDUAL (#) and ALL (*) bits are exclusive".into());
        }
        if zone & (INDIVIDUAL_ID | GROUP_ID | ALL_ID) == 0 {
            r.push("[zone] is missing one of the INDIVIDUAL or ALL bits".into());
        }
        if id_part(zone) < 0 {
            r.push("[zone] ID cannot be negative".into());
        }
        if zone & ALL_ID != 0 && id_part(zone) != 0 {
            r.push("when using the ALL bit, [zone] ID must be 0".into());
        }
        if zone & ALL_ID != 0 && resource & INDIVIDUAL_ID != 0 && types & !FEDERATED != 0 {
            r.push(
                "[resource] INDIVIDUAL(#) selector cannot be applied to ALL zones, except for USER, GROUP and ZONE types"
                    .into(),
            );
        }
        r
    }

    /// oned's acceptance checks (`AclRule::malformed`): [`AclError::Malformed`] with every
    /// reason, or Ok.
    pub fn validate(&self) -> Result<(), AclError> {
        let reasons = self.malformed_reasons();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(AclError::Malformed {
                rule: self.to_rule_string(),
                reasons,
            })
        }
    }

    /// Whether two rules say the same thing (ids aside): what oned calls a duplicate.
    pub fn same_rule(&self, other: &AclRule) -> bool {
        self.user == other.user
            && self.resource == other.resource
            && self.rights == other.rights
            && self.zone == other.zone
    }

    /// The object types a rule names (all of them, including `ACL` and `HOOK` bits).
    pub fn resource_types(&self) -> Vec<ObjectType> {
        ObjectType::ALL
            .iter()
            .copied()
            .filter(|t| self.resource & t.bit() != 0)
            .collect()
    }

    /// The user selector, if exactly one of `#`, `@`, `*` is set.
    pub fn user_spec(&self) -> Option<IdSpec> {
        spec_of(self.user)
    }

    /// The resource selector, if exactly one of `#`, `@`, `%`, `*` is set.
    pub fn resource_spec(&self) -> Option<IdSpec> {
        spec_of(self.resource)
    }

    /// The zone selector, if exactly one selector bit is set.
    pub fn zone_spec(&self) -> Option<IdSpec> {
        spec_of(self.zone)
    }

    /// `<ACL><ID/><USER/><RESOURCE/><RIGHTS/><ZONE/><STRING/></ACL>`; the words in lower-case
    /// hex without `0x` (oned writes them with `std::hex`), e.g. `<USER>200000001</USER>`.
    pub fn write_xml(&self, w: &mut XmlWriter) {
        w.open("ACL")
            .num("ID", self.id)
            .num("USER", format_args!("{:x}", self.user))
            .num("RESOURCE", format_args!("{:x}", self.resource))
            .num("RIGHTS", format_args!("{:x}", self.rights))
            .num("ZONE", format_args!("{:x}", self.zone))
            .text("STRING", &self.to_rule_string())
            .close("ACL");
    }

    pub fn to_xml(&self) -> String {
        let mut w = XmlWriter::with_capacity(256);
        self.write_xml(&mut w);
        w.finish()
    }

    /// Whether deleting user `uid` removes this rule (oned's `del_uid_rules`: USER is `#uid`).
    pub fn obsolete_without_user(&self, uid: i64) -> bool {
        self.user == INDIVIDUAL_ID | (uid as u64 & ID_MASK)
    }

    /// Whether deleting group `gid` removes this rule (`del_gid_rules`: USER is `@gid` or
    /// RESOURCE selects `@gid`).
    pub fn obsolete_without_group(&self, gid: i64) -> bool {
        let want = GROUP_ID | (gid as u64 & ID_MASK);
        self.user == want || self.resource & (GROUP_ID | ID_MASK) == want
    }

    /// Whether deleting cluster `cid` removes this rule (`del_cid_rules`: RESOURCE selects
    /// `%cid`).
    pub fn obsolete_without_cluster(&self, cid: i64) -> bool {
        let want = CLUSTER_ID | (cid as u64 & ID_MASK);
        self.resource & (CLUSTER_ID | ID_MASK) == want
    }

    /// Whether deleting object `oid` of type `ty` removes this rule (`del_resource_rules`:
    /// RESOURCE is exactly `TYPE/#oid`; `IMAGE+TEMPLATE/#7` stays).
    pub fn obsolete_without_object(&self, ty: ObjectType, oid: i64) -> bool {
        self.resource == ty.bit() | INDIVIDUAL_ID | (oid as u64 & ID_MASK)
    }
}

fn spec_of(word: u64) -> Option<IdSpec> {
    let id = (word & ID_MASK) as u32;
    match word & SELECTOR_MASK {
        INDIVIDUAL_ID => Some(IdSpec::Individual(id)),
        GROUP_ID => Some(IdSpec::Group(id)),
        CLUSTER_ID => Some(IdSpec::Cluster(id)),
        ALL_ID => Some(IdSpec::All),
        _ => None,
    }
}

/// Writes the first selector of `order` that is set (then `*`), or `??`.
fn push_selector(s: &mut String, word: u64, order: &[(u64, char)]) {
    use std::fmt::Write;
    for &(bit, c) in order {
        if word & bit != 0 {
            let _ = write!(s, "{c}{}", id_part(word));
            return;
        }
    }
    if word & ALL_ID != 0 {
        s.push('*');
    } else {
        s.push_str("??");
    }
}

/// `TYPE[+TYPE...]/SEL` to its RESOURCE word, or the OCA's message.
fn parse_resource(s: &str) -> Result<u64, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let [types, sel] = parts.as_slice() else {
        return Err(format!("Resource '{s}' malformed"));
    };
    let mut word = 0;
    for name in types.split('+') {
        match ObjectType::from_name(name).filter(|t| t.is_acl_resource()) {
            Some(t) => word |= t.bit(),
            None => return Err(format!("Resource '{name}' does not exist")),
        }
    }
    match IdSpec::parse(sel) {
        Some(spec) => Ok(word | spec.bits()),
        None => Err(format!("ID string '{sel}' malformed")),
    }
}

/// `<ACL_POOL>` with the rules in the order given (`one.acl.info`). oned lists them ordered
/// by the USER word, see [`sort_like_oned`].
pub fn write_pool_xml(rules: &[AclRule]) -> String {
    let mut w = XmlWriter::with_capacity(64 + rules.len() * 200);
    w.open("ACL_POOL");
    for rule in rules {
        rule.write_xml(&mut w);
    }
    w.close("ACL_POOL");
    w.finish()
}

/// Orders rules as oned's `one.acl.info` lists them: by the USER word (so `#uid` rules come
/// before `@gid` rules before `*` rules), ties by id.
pub fn sort_like_oned(rules: &mut [AclRule]) {
    rules.sort_by_key(|r| (r.user as i64, r.id));
}

/// The rules oned creates with a new database (`AclManager` constructor), ids 0, 1, 2:
///
/// ```text
/// 0  @1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *
/// 1  * ZONE/* USE *
/// 2  * MARKETPLACE+MARKETPLACEAPP/* USE *
/// ```
pub fn default_rules() -> Vec<AclRule> {
    use ObjectType::*;
    let bits = |ts: &[ObjectType]| ts.iter().fold(0, |acc, t| acc | t.bit());
    vec![
        AclRule::new(
            0,
            GROUP_ID | 1,
            ALL_ID | bits(&[Vm, Image, Template, Document, SecGroup, VmGroup, BackupJob]),
            AuthOp::Create.bit(),
            ALL_ID,
        ),
        AclRule::new(1, ALL_ID, ALL_ID | Zone.bit(), AuthOp::Use.bit(), ALL_ID),
        AclRule::new(
            2,
            ALL_ID,
            ALL_ID | MarketPlace.bit() | MarketPlaceApp.bit(),
            AuthOp::Use.bit(),
            ALL_ID,
        ),
    ]
}

/// The rules oned adds when user `uid` becomes an administrator of group `gid`
/// (`Group::add_admin_rules`; `del_admin` removes the same four), ids -1:
///
/// ```text
/// #uid USER/@gid USE+MANAGE+ADMIN+CREATE *
/// #uid VM+NET+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VROUTER+VMGROUP+BACKUPJOB/@gid USE+MANAGE *
/// #uid VROUTER/* CREATE *
/// #uid GROUP/#gid MANAGE *
/// ```
pub fn group_admin_rules(uid: i64, gid: i64) -> Vec<AclRule> {
    use ObjectType::*;
    let user = INDIVIDUAL_ID | (uid as u64 & ID_MASK);
    let gid = gid as u64 & ID_MASK;
    let bits = |ts: &[ObjectType]| ts.iter().fold(0, |acc, t| acc | t.bit());
    let all_ops = bits_of_ops(AuthOp::ALL);
    vec![
        AclRule::new(-1, user, User.bit() | GROUP_ID | gid, all_ops, ALL_ID),
        AclRule::new(
            -1,
            user,
            bits(&[
                Vm, Net, Image, Template, Document, SecGroup, VRouter, VmGroup, BackupJob,
            ]) | GROUP_ID
                | gid,
            AuthOp::Use.bit() | AuthOp::Manage.bit(),
            ALL_ID,
        ),
        AclRule::new(
            -1,
            user,
            VRouter.bit() | ALL_ID,
            AuthOp::Create.bit(),
            ALL_ID,
        ),
        AclRule::new(
            -1,
            user,
            Group.bit() | INDIVIDUAL_ID | gid,
            AuthOp::Manage.bit(),
            ALL_ID,
        ),
    ]
}

/// The rules oned adds when group `gid` is created (the default VDC's
/// `DEFAULT_VDC_CLUSTER_HOST_ACL` / `_NET_ACL` / `_DATASTORE_ACL`), ids -1:
///
/// ```text
/// @gid HOST/* MANAGE #0
/// @gid NET+DATASTORE/* USE #0
/// ```
pub fn group_vdc_rules(gid: i64) -> Vec<AclRule> {
    use ObjectType::*;
    let user = GROUP_ID | (gid as u64 & ID_MASK);
    let zone = INDIVIDUAL_ID | u64::from(LOCAL_ZONE_ID);
    vec![
        AclRule::new(-1, user, ALL_ID | Host.bit(), AuthOp::Manage.bit(), zone),
        AclRule::new(
            -1,
            user,
            ALL_ID | Net.bit() | Datastore.bit(),
            AuthOp::Use.bit(),
            zone,
        ),
    ]
}

fn bits_of_ops(ops: &[AuthOp]) -> u64 {
    ops.iter().fold(0, |acc, o| acc | o.bit())
}

/// An authorization question for [`rule_allows`]: may user `uid` (member of `gids`) do `op`
/// on this object (or create one of `obj_type`) in zone `zone_id`?
#[derive(Clone, Copy, Debug)]
pub struct AclRequest<'a> {
    pub uid: i64,
    /// All the user's groups (primary and secondary).
    pub gids: &'a [i64],
    pub obj_type: ObjectType,
    /// The object's id; `None` for CREATE.
    pub obj_id: Option<i64>,
    /// The object's group; for CREATE, the group the new object will belong to (oned checks
    /// `TYPE/@gid` rules on create too). `None` for objects without a group.
    pub obj_gid: Option<i64>,
    /// Clusters the object belongs to (for `%cid` rules).
    pub obj_cluster_ids: &'a [i64],
    pub op: AuthOp,
    /// The zone the request is served in ([`LOCAL_ZONE_ID`]).
    pub zone_id: i64,
}

/// Whether `rule` grants `req`, as oned's `AclManager::authorize`/`match_rules` decide for
/// one rule. All four must hold:
///
/// * **user**: the USER word is exactly `*`, `#uid`, or `@g` for some `g` in `gids` (an exact
///   comparison: a word with stray bits matches nobody);
/// * **rights**: RIGHTS contains the bit of `op`;
/// * **zone**: ZONE has the `*` bit, or its `#` bit and id equal `#zone_id`;
/// * **resource**: RESOURCE has the `obj_type` bit and a selector that fits the object:
///   `*` (every object of the type); `@gid` with `gid == obj_gid`; `#id` with
///   `id == obj_id`; or `%cid` with `cid` in `obj_cluster_ids`. Absent or negative ids never
///   match, so a CREATE (no `obj_id`) is granted by `TYPE/*` or `TYPE/@gid` rules.
///
/// Not decided here (the caller's job, as in oned): the oneadmin-group bypass, the object's
/// owner/group/other permission bits, locks, and VNet reservations (which ignore `*` and
/// `%cid` rules). A user is authorized when any rule allows.
pub fn rule_allows(rule: &AclRule, req: &AclRequest<'_>) -> bool {
    let user_ok = rule.user == ALL_ID
        || (req.uid >= 0 && rule.user == INDIVIDUAL_ID | (req.uid as u64 & ID_MASK))
        || req
            .gids
            .iter()
            .any(|&g| g >= 0 && rule.user == GROUP_ID | (g as u64 & ID_MASK));
    if !user_ok {
        return false;
    }
    let op = req.op.bit();
    if rule.rights & op != op {
        return false;
    }
    if !zone_matches(rule.zone, req.zone_id) {
        return false;
    }
    resource_matches(rule.resource, req)
}

fn zone_matches(zone: u64, zone_id: i64) -> bool {
    zone & ALL_ID == ALL_ID
        || (zone_id >= 0
            && zone & (INDIVIDUAL_ID | ID_MASK) == INDIVIDUAL_ID | (zone_id as u64 & ID_MASK))
}

fn resource_matches(resource: u64, req: &AclRequest<'_>) -> bool {
    let ty = req.obj_type.bit();
    // Each selector compares the type bit, that selector bit and the id, ignoring the rest.
    let with = |sel: u64, id: i64| {
        id >= 0 && resource & (ty | sel | ID_MASK) == ty | sel | (id as u64 & ID_MASK)
    };
    resource & (ty | ALL_ID) == ty | ALL_ID
        || req.obj_gid.is_some_and(|g| with(GROUP_ID, g))
        || req.obj_id.is_some_and(|o| with(INDIVIDUAL_ID, o))
        || req.obj_cluster_ids.iter().any(|&c| with(CLUSTER_ID, c))
}

/// What a user may see of one type through ACL rules: the answer to "which objects" for pool
/// listings (oned's `AclManager::reverse_search`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclVisibility {
    /// A `TYPE/*` rule applies: every object of the type (the lists are then empty).
    pub all: bool,
    /// Objects granted one by one (`TYPE/#id`), sorted, no repeats.
    pub oids: Vec<i64>,
    /// Groups whose objects are granted (`TYPE/@gid`).
    pub gids: Vec<i64>,
    /// Clusters whose objects are granted (`TYPE/%cid`).
    pub cids: Vec<i64>,
}

/// Collects, from the rules that apply to user `uid` in `gids` for `op` in zone `zone_id`,
/// which objects of `obj_type` they grant (the same user/rights matching as [`rule_allows`];
/// the zone must be exactly `#zone_id` or `*`, as in oned's reverse search). Each matching
/// rule counts under its selector; a rule with the type bit and `*` makes `all` true.
pub fn reverse_search<I>(
    rules: I,
    uid: i64,
    gids: &[i64],
    obj_type: ObjectType,
    op: AuthOp,
    zone_id: i64,
) -> AclVisibility
where
    I: IntoIterator,
    I::Item: AsRef<AclRule>,
{
    let ty = obj_type.bit();
    let op_bit = op.bit();
    let zone_req = INDIVIDUAL_ID | (zone_id as u64 & ID_MASK);
    let mut v = AclVisibility::default();
    for item in rules {
        let rule = item.as_ref();
        let user_ok = rule.user == ALL_ID
            || rule.user == INDIVIDUAL_ID | (uid as u64 & ID_MASK)
            || gids
                .iter()
                .any(|&g| rule.user == GROUP_ID | (g as u64 & ID_MASK));
        if !user_ok
            || rule.rights & op_bit != op_bit
            || (rule.zone != zone_req && rule.zone != ALL_ID)
        {
            continue;
        }
        let id = i64::from((rule.resource & ID_MASK) as u32);
        if rule.resource & (ty | ALL_ID) == ty | ALL_ID {
            v.all = true;
            break;
        } else if rule.resource & (ty | GROUP_ID) == ty | GROUP_ID {
            v.gids.push(id);
        } else if rule.resource & (ty | CLUSTER_ID) == ty | CLUSTER_ID {
            v.cids.push(id);
        } else if rule.resource & (ty | INDIVIDUAL_ID) == ty | INDIVIDUAL_ID {
            v.oids.push(id);
        }
    }
    if v.all {
        v.oids.clear();
        v.gids.clear();
        v.cids.clear();
    }
    for list in [&mut v.oids, &mut v.gids, &mut v.cids] {
        list.sort_unstable();
        list.dedup();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AclRule {
        AclRule::parse_rule_string(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn hex(
        user: &str,
        resource: &str,
        rights: &str,
        zone: Option<&str>,
    ) -> Result<AclRule, AclError> {
        AclRule::from_hex(-1, user, resource, rights, zone)
    }

    /// Expected reasons of a rule given as hex words.
    fn reasons(user: u64, resource: u64, rights: u64, zone: u64) -> Vec<String> {
        AclRule::new(-1, user, resource, rights, zone).malformed_reasons()
    }

    #[test]
    fn object_types_match_pool_object_sql() {
        use ObjectType::*;
        // (type, bit from PoolObjectSQL.h, type_to_str, RequestLogger::object_name, in rules)
        let table = [
            (Vm, 0x0000_0010_0000_0000u64, "VM", "virtual machine", true),
            (Host, 0x0000_0020_0000_0000, "HOST", "host", true),
            (Net, 0x0000_0040_0000_0000, "NET", "virtual network", true),
            (Image, 0x0000_0080_0000_0000, "IMAGE", "image", true),
            (User, 0x0000_0100_0000_0000, "USER", "user", true),
            (
                Template,
                0x0000_0200_0000_0000,
                "TEMPLATE",
                "virtual machine template",
                true,
            ),
            (Group, 0x0000_0400_0000_0000, "GROUP", "group", true),
            (Acl, 0x0000_0800_0000_0000, "ACL", "ACL", false),
            (
                Datastore,
                0x0000_1000_0000_0000,
                "DATASTORE",
                "datastore",
                true,
            ),
            (Cluster, 0x0000_2000_0000_0000, "CLUSTER", "cluster", true),
            (
                Document,
                0x0000_4000_0000_0000,
                "DOCUMENT",
                "document",
                true,
            ),
            (Zone, 0x0000_8000_0000_0000, "ZONE", "zone", true),
            (
                SecGroup,
                0x0001_0000_0000_0000,
                "SECGROUP",
                "security group",
                true,
            ),
            (Vdc, 0x0002_0000_0000_0000, "VDC", "VDC", true),
            (
                VRouter,
                0x0004_0000_0000_0000,
                "VROUTER",
                "virtual router",
                true,
            ),
            (
                MarketPlace,
                0x0008_0000_0000_0000,
                "MARKETPLACE",
                "marketplace",
                true,
            ),
            (
                MarketPlaceApp,
                0x0010_0000_0000_0000,
                "MARKETPLACEAPP",
                "marketplaceapp",
                true,
            ),
            (VmGroup, 0x0020_0000_0000_0000, "VMGROUP", "vm group", true),
            (
                VnTemplate,
                0x0040_0000_0000_0000,
                "VNTEMPLATE",
                "virtual network template",
                true,
            ),
            (Hook, 0x0080_0000_0000_0000, "HOOK", "hook", false),
            (
                BackupJob,
                0x0100_0000_0000_0000,
                "BACKUPJOB",
                "backup job",
                true,
            ),
            (
                ScheduledAction,
                0x0200_0000_0000_0000,
                "SCHEDULEDACTION",
                "scheduled action",
                false,
            ),
        ];
        assert_eq!(ObjectType::ALL.len(), table.len());
        for (i, (t, bit, name, obj, in_rules)) in table.into_iter().enumerate() {
            assert_eq!(ObjectType::ALL[i], t);
            assert_eq!(t.bit(), bit, "{name}");
            assert_eq!(t.name(), name);
            assert_eq!(t.to_string(), name);
            assert_eq!(t.object_name(), obj);
            assert_eq!(t.is_acl_resource(), in_rules, "{name}");
            assert_eq!(ObjectType::from_name(name), Some(t));
            assert_eq!(ObjectType::from_name(&name.to_lowercase()), Some(t));
            assert_eq!(ObjectType::from_bit(bit), Some(t));
        }
        assert_eq!(ObjectType::from_name("VMS"), None);
        assert_eq!(ObjectType::from_bit(0x3000000000), None);
        // The Ruby OCA's RESOURCES table is exactly the rule types.
        assert_eq!(
            ObjectType::ALL
                .iter()
                .filter(|t| t.is_acl_resource())
                .count(),
            19
        );
    }

    #[test]
    fn auth_ops_and_selectors() {
        let ops: Vec<(u64, &str)> = AuthOp::ALL.iter().map(|o| (o.bit(), o.name())).collect();
        assert_eq!(
            ops,
            [(1, "USE"), (2, "MANAGE"), (4, "ADMIN"), (8, "CREATE")]
        );
        assert_eq!(AuthOp::from_name("manage"), Some(AuthOp::Manage));
        assert_eq!(AuthOp::from_name("INFO"), None);
        assert_eq!(AuthOp::Admin.to_string(), "ADMIN");
        assert_eq!(
            (INDIVIDUAL_ID, GROUP_ID, ALL_ID, CLUSTER_ID),
            (0x100000000, 0x200000000, 0x400000000, 0x800000000)
        );
        assert_eq!(IdSpec::parse("#12"), Some(IdSpec::Individual(12)));
        assert_eq!(IdSpec::parse("@0"), Some(IdSpec::Group(0)));
        assert_eq!(
            IdSpec::parse("%4294967295"),
            Some(IdSpec::Cluster(u32::MAX))
        );
        assert_eq!(IdSpec::parse("*"), Some(IdSpec::All));
        for bad in [
            "",
            "#",
            "#x",
            "# 1",
            "#-1",
            "#4294967296",
            "**",
            "5",
            "$1",
            "#+1",
        ] {
            assert_eq!(IdSpec::parse(bad), None, "{bad:?}");
        }
        assert_eq!(IdSpec::Group(7).bits(), 0x200000007);
    }

    #[test]
    fn default_rules_are_opennebulas() {
        let rules = default_rules();
        let shown: Vec<(i64, String, [String; 4])> = rules
            .iter()
            .map(|r| (r.id, r.to_rule_string(), r.to_hex()))
            .collect();
        let words = |u: &str, r: &str, g: &str, z: &str| [u, r, g, z].map(String::from);
        assert_eq!(
            shown,
            [
                (
                    0,
                    "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *"
                        .to_string(),
                    words("200000001", "121429400000000", "8", "400000000"),
                ),
                (
                    1,
                    "* ZONE/* USE *".to_string(),
                    words("400000000", "800400000000", "1", "400000000")
                ),
                (
                    2,
                    "* MARKETPLACE+MARKETPLACEAPP/* USE *".to_string(),
                    words("400000000", "18000400000000", "1", "400000000"),
                ),
            ]
        );
        for r in &rules {
            r.validate().unwrap();
            let mut back = rule(&r.to_rule_string());
            back.id = r.id;
            assert_eq!(&back, r);
        }
    }

    #[test]
    fn group_admin_rules_are_opennebulas() {
        let shown: Vec<String> = group_admin_rules(3, 100)
            .iter()
            .map(|r| {
                r.validate().unwrap();
                assert_eq!(r.id, -1);
                r.to_rule_string()
            })
            .collect();
        assert_eq!(
            shown,
            [
                "#3 USER/@100 USE+MANAGE+ADMIN+CREATE *",
                "#3 VM+NET+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VROUTER+VMGROUP+BACKUPJOB/@100 USE+MANAGE *",
                "#3 VROUTER/* CREATE *",
                "#3 GROUP/#100 MANAGE *",
            ]
        );
    }

    #[test]
    fn rule_strings_round_trip() {
        for s in [
            "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
            "* ZONE/* USE *",
            "#5 HOST/%0 USE+MANAGE #0",
            "#0 NET+DATASTORE/%100 ADMIN #0",
            "@105 VM/@105 USE+MANAGE+ADMIN+CREATE #0",
            "* VM+HOST+NET+IMAGE+USER+TEMPLATE+GROUP+DATASTORE+CLUSTER+DOCUMENT+ZONE+SECGROUP+VDC+VROUTER+MARKETPLACE+MARKETPLACEAPP+VMGROUP+VNTEMPLATE+BACKUPJOB/* USE *",
            "#2147483647 IMAGE/#2147483647 MANAGE #2147483647",
        ] {
            let r = rule(s);
            assert_eq!(r.id, -1);
            assert_eq!(r.to_rule_string(), s);
        }
    }

    #[test]
    fn parse_normalizes() {
        // names ignore case; any whitespace separates; the canonical order is oned's
        let r = rule("  @1\timage+vm/*  create+use  ");
        assert_eq!(r.to_rule_string(), "@1 VM+IMAGE/* USE+CREATE #0");
        assert_eq!(r.zone, INDIVIDUAL_ID | u64::from(LOCAL_ZONE_ID));
        // a repeated name counts once (the OCAs would add it up into another bit)
        assert_eq!(rule("* VM+VM/* USE+USE *"), rule("* VM/* USE *"));
        assert_eq!(
            rule("#5 HOST/%0 USE+MANAGE #0"),
            AclRule::new(-1, 0x100000005, 0x2800000000, 0x3, 0x100000000)
        );
        // syntax only: oned's checks are separate
        let odd = rule("* VM/%3 USE *");
        assert!(odd.validate().is_err());
    }

    #[test]
    fn parse_errors() {
        let err = |s: &str| match AclRule::parse_rule_string(s) {
            Err(AclError::Syntax(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        let components = "String needs three or four components: User, Resource, Rights [,Zone]";
        assert_eq!(err(""), components);
        assert_eq!(err("* VM/*"), components);
        assert_eq!(err("* VM/* USE * extra"), components);
        assert_eq!(err("5 VM/* USE"), "ID string '5' malformed");
        assert_eq!(
            err("%1 VM/* USE"),
            "User '%1' malformed, it must be #<uid>, @<gid> or *"
        );
        assert_eq!(err("* VM USE"), "Resource 'VM' malformed");
        assert_eq!(err("* VM/*/1 USE"), "Resource 'VM/*/1' malformed");
        assert_eq!(err("* VM+DISK/* USE"), "Resource 'DISK' does not exist");
        assert_eq!(err("* HOOK/* USE"), "Resource 'HOOK' does not exist");
        assert_eq!(err("* ACL/* USE"), "Resource 'ACL' does not exist");
        assert_eq!(err("* /* USE"), "Resource '' does not exist");
        assert_eq!(err("* VM/#a USE"), "ID string '#a' malformed");
        assert_eq!(err("* VM/* USE+INFO"), "Right 'INFO' does not exist");
        assert_eq!(
            err("* VM/* USE @0"),
            "Zone '@0' malformed, it must be #<zone id> or *"
        );
        assert_eq!(err("* VM/* USE 0"), "ID string '0' malformed");
        assert_eq!(
            err("x VM/y DELETE"),
            "ID string 'x' malformed, ID string 'y' malformed, Right 'DELETE' does not exist"
        );
    }

    #[test]
    fn from_hex_accepts_what_the_oca_send() {
        let want = AclRule::new(-1, 0x200000001, 0x8000000000 | ALL_ID, 0x8, ALL_ID);
        // Ruby: lower case, no prefix; pyone: 0x prefix; goca: upper-case user
        assert_eq!(
            hex("200000001", "8400000000", "8", Some("400000000")),
            Ok(want.clone())
        );
        assert_eq!(
            hex("0x200000001", "0x8400000000", "0x8", Some("0x400000000")),
            Ok(want.clone())
        );
        assert_eq!(
            hex("200000001", "8400000000", "8", Some(" 0X400000000\n")),
            Ok(want)
        );
        // no zone: this zone
        let local = hex("400000000", "800400000000", "1", None).unwrap();
        assert_eq!(local.zone, 0x100000000);
        assert_eq!(local.to_rule_string(), "* ZONE/* USE #0");
        assert_eq!(hex("400000000", "800400000000", "1", Some("")), Ok(local));
        assert_eq!(
            AclRule::from_hex(7, "400000000", "800400000000", "1", None)
                .unwrap()
                .id,
            7
        );
        // to_hex gives back what from_hex reads
        let r = rule("#5 HOST/%0 USE+MANAGE #0");
        let [u, res, g, z] = r.to_hex();
        assert_eq!(
            [&u, &res, &g, &z],
            ["100000005", "2800000000", "3", "100000000"]
        );
        assert_eq!(hex(&u, &res, &g, Some(&z)), Ok(r));
    }

    #[test]
    fn from_hex_rejects_non_hex() {
        let not_hex = |field: &'static str, value: &str| {
            Err(AclError::NotHex {
                field,
                value: value.to_string(),
            })
        };
        assert_eq!(hex("", "8400000000", "8", None), not_hex("user", ""));
        assert_eq!(hex("0x", "8400000000", "8", None), not_hex("user", "0x"));
        assert_eq!(hex("400000000", "@1", "8", None), not_hex("resource", "@1"));
        assert_eq!(
            hex("400000000", "8400000000", "-1", None),
            not_hex("rights", "-1")
        );
        assert_eq!(
            hex("400000000", "8400000000", "8", Some("1g")),
            not_hex("zone", "1g")
        );
        assert_eq!(
            hex("400000000", "1ffffffffffffffff", "8", None),
            not_hex("resource", "1ffffffffffffffff")
        );
        assert_eq!(
            hex("zz", "8400000000", "1", None).unwrap_err().to_string(),
            "[user] 'zz' is not a hexadecimal number"
        );
    }

    #[test]
    fn malformed_rules_get_onedes_reasons() {
        const VM: u64 = 0x1000000000;
        const HOST: u64 = 0x2000000000;
        const ZONE_ALL: u64 = ALL_ID;
        const Z0: u64 = INDIVIDUAL_ID;
        let one = |s: &str| vec![s.to_string()];
        // user
        assert_eq!(
            reasons(INDIVIDUAL_ID | GROUP_ID | 1, VM | ALL_ID, 1, Z0),
            one("[user] INDIVIDUAL (#) and GROUP (@) bits are exclusive")
        );
        assert_eq!(
            reasons(INDIVIDUAL_ID | ALL_ID, VM | ALL_ID, 1, Z0),
            one("[user] INDIVIDUAL (#) and ALL (*) bits are exclusive")
        );
        assert_eq!(
            reasons(GROUP_ID | ALL_ID, VM | ALL_ID, 1, Z0),
            one("[user] GROUP (@) and ALL (*) bits are exclusive")
        );
        assert_eq!(
            reasons(5, VM | ALL_ID, 1, Z0),
            one("[user] is missing one of the INDIVIDUAL, GROUP or ALL bits")
        );
        assert_eq!(
            reasons(INDIVIDUAL_ID | 0xFFFF_FFFF, VM | ALL_ID, 1, Z0),
            one("[user] ID cannot be negative")
        );
        assert_eq!(
            reasons(ALL_ID | 3, VM | ALL_ID, 1, Z0),
            one("when using the ALL bit, [user] ID must be 0")
        );
        // resource
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID | INDIVIDUAL_ID, 1, Z0),
            one("[resource] INDIVIDUAL (#), GROUP (@), CLUSTER (%) and ALL (*) bits are exclusive")
        );
        assert_eq!(
            reasons(ALL_ID, VM | HOST | CLUSTER_ID, 1, Z0),
            one(
                "[resource] CLUSTER(%) selector can be applied only to DATASTORE, HOST and NET types"
            )
        );
        assert_eq!(
            reasons(ALL_ID, 0x0000_1060_0000_0000 | CLUSTER_ID, 1, Z0),
            Vec::<String>::new()
        );
        // oned's list of types refused with % leaves BACKUPJOB out
        assert_eq!(
            reasons(ALL_ID, ObjectType::BackupJob.bit() | CLUSTER_ID, 1, Z0),
            Vec::<String>::new()
        );
        assert_eq!(
            reasons(ALL_ID, HOST | GROUP_ID | 1, 1, Z0),
            one(
                "[resource] GROUP(@) selector cannot be applied to HOST, GROUP, CLUSTER, ZONE or VDC types"
            )
        );
        assert_eq!(
            reasons(ALL_ID, VM | 4, 1, Z0),
            one("[resource] is missing one of the INDIVIDUAL, GROUP, CLUSTER or ALL bits")
        );
        assert_eq!(
            reasons(ALL_ID, VM | INDIVIDUAL_ID | 0x8000_0000, 1, Z0),
            one("[resource] ID cannot be negative")
        );
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID | 2, 1, Z0),
            one("when using the ALL bit, [resource] ID must be 0")
        );
        assert_eq!(
            reasons(ALL_ID, ALL_ID, 1, Z0),
            one("[resource] type is missing")
        );
        assert_eq!(
            reasons(ALL_ID, ObjectType::Hook.bit() | ALL_ID, 1, Z0),
            one("wrong [resource] type")
        );
        assert_eq!(
            reasons(ALL_ID, ObjectType::ScheduledAction.bit() | ALL_ID, 1, Z0),
            one("wrong [resource] type")
        );
        // the ACL bit passes oned's checks (but is never printed)
        assert_eq!(
            reasons(ALL_ID, ObjectType::Acl.bit() | ALL_ID, 1, Z0),
            Vec::<String>::new()
        );
        // rights
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID, 0, Z0),
            one("wrong [rights], it cannot be 0")
        );
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID, 0x10, Z0),
            one("wrong [rights], it cannot be bigger than 0xF")
        );
        // zone
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID, 1, GROUP_ID),
            one("[zone] GROUP (@) bit is not supported")
        );
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID, 1, INDIVIDUAL_ID | ALL_ID),
            one("[zone] INDIVIDUAL (#) and ALL (*) bits are exclusive")
        );
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID, 1, 0),
            one("[zone] is missing one of the INDIVIDUAL or ALL bits")
        );
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID, 1, INDIVIDUAL_ID | 0x9000_0000),
            one("[zone] ID cannot be negative")
        );
        assert_eq!(
            reasons(ALL_ID, VM | ALL_ID, 1, ALL_ID | 1),
            one("when using the ALL bit, [zone] ID must be 0")
        );
        assert_eq!(
            reasons(ALL_ID, VM | INDIVIDUAL_ID | 4, 1, ZONE_ALL),
            one(
                "[resource] INDIVIDUAL(#) selector cannot be applied to ALL zones, except for USER, GROUP and ZONE types"
            )
        );
        assert_eq!(
            reasons(
                ALL_ID,
                ObjectType::User.bit() | ObjectType::Zone.bit() | INDIVIDUAL_ID | 4,
                1,
                ZONE_ALL
            ),
            Vec::<String>::new()
        );
        // several at once, and the message oned answers addrule with
        let err = hex("0", "1000000000", "0", Some("400000000")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Rule ?? VM/??  * is malformed: [user] is missing one of the INDIVIDUAL, GROUP or ALL bits; \
             [resource] is missing one of the INDIVIDUAL, GROUP, CLUSTER or ALL bits; \
             wrong [rights], it cannot be 0"
        );
        assert_eq!(
            hex("100000005", "400000000", "1", None)
                .unwrap_err()
                .to_string(),
            "Rule #5 /* USE #0 is malformed: [resource] type is missing"
        );
    }

    #[test]
    fn rule_string_edge_cases() {
        // the ACL bit is not printed; an id with bit 31 prints negative; no selector is ??
        let r = AclRule::new(
            -1,
            INDIVIDUAL_ID | 0xFFFF_FFFF,
            ObjectType::Acl.bit() | ObjectType::Vm.bit() | 9,
            0x1F,
            0,
        );
        assert_eq!(r.to_rule_string(), "#-1 VM/?? USE+MANAGE+ADMIN+CREATE ??");
        // oned prefers @ over # over * when several selector bits are set
        let r = AclRule::new(
            -1,
            GROUP_ID | INDIVIDUAL_ID | 2,
            ObjectType::Net.bit() | ALL_ID | CLUSTER_ID | 1,
            1,
            ALL_ID,
        );
        assert_eq!(r.to_rule_string(), "@2 NET/%1 USE *");
        assert_eq!(r.user_spec(), None);
        assert_eq!(rule("@3 NET/%1 USE #0").user_spec(), Some(IdSpec::Group(3)));
        assert_eq!(
            rule("@3 NET/%1 USE #0").resource_spec(),
            Some(IdSpec::Cluster(1))
        );
        assert_eq!(rule("@3 NET/%1 USE *").zone_spec(), Some(IdSpec::All));
        assert_eq!(
            rule("* VM+NET+BACKUPJOB/* USE").resource_types(),
            [ObjectType::Vm, ObjectType::Net, ObjectType::BackupJob]
        );
    }

    /// The pool below passed the XSD checker (acl_pool.xsd).
    const SAMPLE_POOL: &str = "<ACL_POOL>\
        <ACL><ID>0</ID><USER>200000001</USER><RESOURCE>121429400000000</RESOURCE><RIGHTS>8</RIGHTS>\
        <ZONE>400000000</ZONE><STRING>@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *</STRING></ACL>\
        <ACL><ID>1</ID><USER>400000000</USER><RESOURCE>800400000000</RESOURCE><RIGHTS>1</RIGHTS>\
        <ZONE>400000000</ZONE><STRING>* ZONE/* USE *</STRING></ACL>\
        <ACL><ID>2</ID><USER>400000000</USER><RESOURCE>18000400000000</RESOURCE><RIGHTS>1</RIGHTS>\
        <ZONE>400000000</ZONE><STRING>* MARKETPLACE+MARKETPLACEAPP/* USE *</STRING></ACL>\
        <ACL><ID>3</ID><USER>100000005</USER><RESOURCE>2800000000</RESOURCE><RIGHTS>3</RIGHTS>\
        <ZONE>100000000</ZONE><STRING>#5 HOST/%0 USE+MANAGE #0</STRING></ACL>\
        </ACL_POOL>";

    #[test]
    fn pool_xml_is_onedes() {
        let mut rules = default_rules();
        rules.push(AclRule {
            id: 3,
            ..rule("#5 HOST/%0 USE+MANAGE #0")
        });
        assert_eq!(write_pool_xml(&rules), SAMPLE_POOL);
        assert_eq!(write_pool_xml(&[]), "<ACL_POOL></ACL_POOL>");
        assert_eq!(
            rules[3].to_xml(),
            "<ACL><ID>3</ID><USER>100000005</USER><RESOURCE>2800000000</RESOURCE><RIGHTS>3</RIGHTS>\
             <ZONE>100000000</ZONE><STRING>#5 HOST/%0 USE+MANAGE #0</STRING></ACL>"
        );
        // oned lists by USER word: #5 first, then @1, then the * rules
        sort_like_oned(&mut rules);
        assert_eq!(rules.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 0, 1, 2]);
    }

    #[test]
    fn duplicates_and_cleanup() {
        let a = rule("@1 VM/* CREATE *");
        let b = AclRule { id: 9, ..a.clone() };
        assert!(a.same_rule(&b));
        assert!(!a.same_rule(&rule("@1 VM/* CREATE #0")));
        assert_eq!(
            AclError::Duplicate {
                rule: a.to_rule_string()
            }
            .to_string(),
            "Rule @1 VM/* CREATE * already exists"
        );
        assert_eq!(AclError::NotFound(12).to_string(), "Rule 12 does not exist");
        assert_eq!(AclError::NotFound(12).code(), ErrorCode::Internal);

        assert!(rule("#4 VM/* USE").obsolete_without_user(4));
        assert!(!rule("@4 VM/* USE").obsolete_without_user(4));
        assert!(rule("@4 VM/* USE").obsolete_without_group(4));
        assert!(rule("#1 VM+NET/@4 USE").obsolete_without_group(4));
        assert!(!rule("#1 VM/#4 USE").obsolete_without_group(4));
        assert!(rule("#1 HOST+NET/%2 USE").obsolete_without_cluster(2));
        assert!(!rule("#1 HOST/%3 USE").obsolete_without_cluster(2));
        assert!(rule("* IMAGE/#7 USE").obsolete_without_object(ObjectType::Image, 7));
        assert!(!rule("* IMAGE+TEMPLATE/#7 USE").obsolete_without_object(ObjectType::Image, 7));
        assert!(!rule("* IMAGE/#7 USE").obsolete_without_object(ObjectType::Template, 7));
    }

    fn req<'a>(
        uid: i64,
        gids: &'a [i64],
        obj_type: ObjectType,
        obj: Option<(i64, i64)>,
        clusters: &'a [i64],
        op: AuthOp,
    ) -> AclRequest<'a> {
        AclRequest {
            uid,
            gids,
            obj_type,
            obj_id: obj.map(|o| o.0),
            obj_gid: obj.map(|o| o.1),
            obj_cluster_ids: clusters,
            op,
            zone_id: 0,
        }
    }

    #[test]
    fn matching_follows_acl_manager() {
        use AuthOp::*;
        use ObjectType::*;
        let users = [1i64];
        let create_vm = req(5, &users, Vm, None, &[], Create);
        // default rule 0: members of group 1 create VMs, images... anywhere
        let r0 = &default_rules()[0];
        assert!(rule_allows(r0, &create_vm));
        assert!(rule_allows(
            r0,
            &req(5, &[0, 1], BackupJob, None, &[], Create)
        ));
        assert!(
            !rule_allows(r0, &req(5, &[2], Vm, None, &[], Create)),
            "not in group 1"
        );
        assert!(
            !rule_allows(r0, &req(5, &users, Net, None, &[], Create)),
            "NET not named"
        );
        assert!(
            !rule_allows(r0, &req(5, &users, Vm, Some((3, 1)), &[], Use)),
            "CREATE only"
        );
        // rule 1: everyone uses every zone
        assert!(rule_allows(
            &default_rules()[1],
            &req(77, &[], Zone, Some((0, -1)), &[], Use)
        ));

        let host3 = |op| req(5, &users, Host, Some((3, -1)), &[0, 100], op);
        // user selector: #uid, @gid of any of the user's groups, *
        assert!(rule_allows(&rule("#5 HOST/* MANAGE"), &host3(Manage)));
        assert!(!rule_allows(&rule("#6 HOST/* MANAGE"), &host3(Manage)));
        assert!(rule_allows(&rule("@1 HOST/* MANAGE"), &host3(Manage)));
        assert!(rule_allows(&rule("* HOST/* MANAGE"), &host3(Manage)));
        // rights must contain the operation
        assert!(rule_allows(
            &rule("* HOST/* USE+MANAGE+ADMIN"),
            &host3(Admin)
        ));
        assert!(!rule_allows(&rule("* HOST/* USE+MANAGE"), &host3(Admin)));
        // resource: #id, %cluster (any of the object's), *; type bit required
        assert!(rule_allows(&rule("* HOST/#3 USE"), &host3(Use)));
        assert!(!rule_allows(&rule("* HOST/#4 USE"), &host3(Use)));
        assert!(!rule_allows(&rule("* VM/#3 USE"), &host3(Use)));
        assert!(rule_allows(&rule("* VM+HOST/#3 USE"), &host3(Use)));
        assert!(rule_allows(&rule("* HOST/%100 USE"), &host3(Use)));
        assert!(rule_allows(&rule("* HOST/%0 USE"), &host3(Use)));
        assert!(!rule_allows(&rule("* HOST/%1 USE"), &host3(Use)));
        assert!(!rule_allows(&rule("* NET/%100 USE"), &host3(Use)));
        // zone: #this zone or *
        assert!(rule_allows(&rule("* HOST/* USE #0"), &host3(Use)));
        assert!(rule_allows(&rule("* HOST/* USE *"), &host3(Use)));
        assert!(!rule_allows(&rule("* HOST/* USE #1"), &host3(Use)));

        // @gid resource: the object's group, also for CREATE into that group
        let img = req(5, &users, Image, Some((8, 105)), &[], Manage);
        assert!(rule_allows(&rule("* IMAGE/@105 MANAGE"), &img));
        assert!(!rule_allows(&rule("* IMAGE/@1 MANAGE"), &img));
        assert!(!rule_allows(&rule("* IMAGE/#105 MANAGE"), &img));
        let create_in_105 = AclRequest {
            obj_gid: Some(105),
            ..req(5, &users, Image, None, &[], Create)
        };
        assert!(rule_allows(&rule("* IMAGE/@105 CREATE"), &create_in_105));
        assert!(!rule_allows(&rule("* IMAGE/@105 CREATE"), &create_vm));
        assert!(
            !rule_allows(&rule("* IMAGE/#0 CREATE"), &create_in_105),
            "no object id yet"
        );

        // a rule whose USER word has stray bits matches nobody; negative ids never match
        let stray = AclRule::new(-1, ALL_ID | CLUSTER_ID, Host.bit() | ALL_ID, 1, ALL_ID);
        assert!(!rule_allows(&stray, &host3(Use)));
        let no_group = req(5, &users, Vm, Some((-1, -1)), &[-1], Use);
        assert!(!rule_allows(&rule("* VM/#0 USE *"), &no_group));
        assert!(rule_allows(&rule("* VM/* USE *"), &no_group));
        assert!(!rule_allows(
            &rule("#4294967295 VM/* USE *"),
            &req(-1, &[], Vm, None, &[], Use)
        ));
    }

    #[test]
    fn reverse_search_collects_grants() {
        use AuthOp::*;
        use ObjectType::*;
        let rules = [
            rule("#5 NET/#7 USE *"),
            rule("#5 NET/#3 USE+MANAGE #0"),
            rule("@1 NET/@105 USE #0"),
            rule("* NET/%100 USE *"),
            rule("* NET/%100 USE *"),
            rule("#5 NET/#9 USE #1"),    // other zone
            rule("#6 NET/#10 USE *"),    // other user
            rule("#5 NET/#11 MANAGE *"), // other right
            rule("#5 VM/* USE *"),       // other type
        ];
        let v = reverse_search(&rules, 5, &[1], Net, Use, 0);
        assert_eq!(
            v,
            AclVisibility {
                all: false,
                oids: vec![3, 7],
                gids: vec![105],
                cids: vec![100],
            }
        );
        let mut with_all = rules.to_vec();
        with_all.push(rule("@1 NET+VM/* USE"));
        let v = reverse_search(with_all.iter(), 5, &[1], Net, Use, 0);
        assert_eq!(
            v,
            AclVisibility {
                all: true,
                ..Default::default()
            }
        );
        assert_eq!(reverse_search(&rules, 8, &[], Net, Use, 0).cids, [100]);
        assert_eq!(
            reverse_search(Vec::<AclRule>::new(), 8, &[], Net, Use, 0),
            AclVisibility::default()
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn id() -> impl Strategy<Value = u32> {
            prop_oneof![0u32..5, 0u32..=i32::MAX as u32]
        }

        fn user() -> impl Strategy<Value = u64> {
            prop_oneof![
                id().prop_map(|i| IdSpec::Individual(i).bits()),
                id().prop_map(|i| IdSpec::Group(i).bits()),
                Just(ALL_ID),
            ]
        }

        fn resource() -> impl Strategy<Value = u64> {
            let types: Vec<u64> = ObjectType::ALL
                .iter()
                .filter(|t| t.is_acl_resource())
                .map(|t| t.bit())
                .collect();
            let n = types.len();
            let sel = prop_oneof![
                id().prop_map(IdSpec::Individual),
                id().prop_map(IdSpec::Group),
                id().prop_map(IdSpec::Cluster),
                Just(IdSpec::All),
            ];
            (1u32..(1 << n), sel).prop_map(move |(mask, sel)| {
                let ty = (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .fold(0, |acc, i| acc | types[i]);
                ty | sel.bits()
            })
        }

        fn zone() -> impl Strategy<Value = u64> {
            prop_oneof![
                id().prop_map(|i| IdSpec::Individual(i).bits()),
                Just(ALL_ID)
            ]
        }

        fn any_rule() -> impl Strategy<Value = AclRule> {
            (user(), resource(), 1u64..16, zone())
                .prop_map(|(u, r, g, z)| AclRule::new(-1, u, r, g, z))
        }

        proptest! {
            #[test]
            fn string_round_trips(r in any_rule()) {
                let s = r.to_rule_string();
                prop_assert_eq!(AclRule::parse_rule_string(&s), Ok(r.clone()));
                // and lower case reads the same
                prop_assert_eq!(AclRule::parse_rule_string(&s.to_lowercase()), Ok(r));
            }

            #[test]
            fn hex_round_trips_for_valid_rules(r in any_rule()) {
                let [u, res, g, z] = r.to_hex();
                let back = AclRule::from_hex(-1, &u, &res, &g, Some(&z));
                if r.malformed_reasons().is_empty() {
                    prop_assert_eq!(back, Ok(r));
                } else {
                    let is_malformed = matches!(back, Err(AclError::Malformed { .. }));
                    prop_assert!(is_malformed);
                }
            }

            #[test]
            fn a_rule_only_grants_what_it_names(
                r in any_rule(),
                uid in 0i64..6,
                gid in 0i64..6,
                oid in 0i64..6,
                cid in 0i64..6,
                ti in 0usize..22,
                oi in 0usize..4,
            ) {
                let ty = ObjectType::ALL[ti];
                let op = AuthOp::ALL[oi];
                let gids = [gid];
                let cids = [cid];
                let q = AclRequest {
                    uid, gids: &gids, obj_type: ty, obj_id: Some(oid), obj_gid: Some(gid),
                    obj_cluster_ids: &cids, op, zone_id: 0,
                };
                if rule_allows(&r, &q) {
                    prop_assert!(r.resource & ty.bit() != 0);
                    prop_assert!(r.rights & op.bit() != 0);
                    let s = r.to_rule_string();
                    prop_assert!(s.contains(ty.name()));
                }
            }
        }
    }
}
