//! State and type enums with OpenNebula's numbers and names (fact sheet §3-§4).

/// Declares a `#[repr(i32)]` enum with its OpenNebula number and upper-case name.
macro_rules! one_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $num:expr => $text:expr),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize)]
        #[repr(i32)]
        pub enum $name { $($variant = $num),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn num(self) -> i32 { self as i32 }

            pub fn from_num(n: i64) -> Option<Self> {
                match n { $(x if x == $num => Some($name::$variant),)+ _ => None }
            }

            /// The upper-case name OpenNebula uses (in messages, hooks and templates).
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_name(s: &str) -> Option<Self> {
                match s { $(x if x.eq_ignore_ascii_case($text) => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

one_enum!(
    /// VM STATE.
    VmState {
        Init = 0 => "INIT",
        Pending = 1 => "PENDING",
        Hold = 2 => "HOLD",
        Active = 3 => "ACTIVE",
        Stopped = 4 => "STOPPED",
        Suspended = 5 => "SUSPENDED",
        Done = 6 => "DONE",
        Failed = 7 => "FAILED",
        Poweroff = 8 => "POWEROFF",
        Undeployed = 9 => "UNDEPLOYED",
        Cloning = 10 => "CLONING",
        CloningFailure = 11 => "CLONING_FAILURE",
    }
);

one_enum!(
    /// VM LCM_STATE, meaningful while STATE is ACTIVE.
    LcmState {
        LcmInit = 0 => "LCM_INIT",
        Prolog = 1 => "PROLOG",
        Boot = 2 => "BOOT",
        Running = 3 => "RUNNING",
        Migrate = 4 => "MIGRATE",
        SaveStop = 5 => "SAVE_STOP",
        SaveSuspend = 6 => "SAVE_SUSPEND",
        SaveMigrate = 7 => "SAVE_MIGRATE",
        PrologMigrate = 8 => "PROLOG_MIGRATE",
        PrologResume = 9 => "PROLOG_RESUME",
        EpilogStop = 10 => "EPILOG_STOP",
        Epilog = 11 => "EPILOG",
        Shutdown = 12 => "SHUTDOWN",
        Cancel = 13 => "CANCEL",
        Failure = 14 => "FAILURE",
        CleanupResubmit = 15 => "CLEANUP_RESUBMIT",
        Unknown = 16 => "UNKNOWN",
        Hotplug = 17 => "HOTPLUG",
        ShutdownPoweroff = 18 => "SHUTDOWN_POWEROFF",
        BootUnknown = 19 => "BOOT_UNKNOWN",
        BootPoweroff = 20 => "BOOT_POWEROFF",
        BootSuspended = 21 => "BOOT_SUSPENDED",
        BootStopped = 22 => "BOOT_STOPPED",
        CleanupDelete = 23 => "CLEANUP_DELETE",
        HotplugSnapshot = 24 => "HOTPLUG_SNAPSHOT",
        HotplugNic = 25 => "HOTPLUG_NIC",
        HotplugSaveas = 26 => "HOTPLUG_SAVEAS",
        HotplugSaveasPoweroff = 27 => "HOTPLUG_SAVEAS_POWEROFF",
        HotplugSaveasSuspended = 28 => "HOTPLUG_SAVEAS_SUSPENDED",
        ShutdownUndeploy = 29 => "SHUTDOWN_UNDEPLOY",
        EpilogUndeploy = 30 => "EPILOG_UNDEPLOY",
        PrologUndeploy = 31 => "PROLOG_UNDEPLOY",
        BootUndeploy = 32 => "BOOT_UNDEPLOY",
        HotplugPrologPoweroff = 33 => "HOTPLUG_PROLOG_POWEROFF",
        HotplugEpilogPoweroff = 34 => "HOTPLUG_EPILOG_POWEROFF",
        BootMigrate = 35 => "BOOT_MIGRATE",
        BootFailure = 36 => "BOOT_FAILURE",
        BootMigrateFailure = 37 => "BOOT_MIGRATE_FAILURE",
        PrologMigrateFailure = 38 => "PROLOG_MIGRATE_FAILURE",
        PrologFailure = 39 => "PROLOG_FAILURE",
        EpilogFailure = 40 => "EPILOG_FAILURE",
        EpilogStopFailure = 41 => "EPILOG_STOP_FAILURE",
        EpilogUndeployFailure = 42 => "EPILOG_UNDEPLOY_FAILURE",
        PrologMigratePoweroff = 43 => "PROLOG_MIGRATE_POWEROFF",
        PrologMigratePoweroffFailure = 44 => "PROLOG_MIGRATE_POWEROFF_FAILURE",
        PrologMigrateSuspend = 45 => "PROLOG_MIGRATE_SUSPEND",
        PrologMigrateSuspendFailure = 46 => "PROLOG_MIGRATE_SUSPEND_FAILURE",
        BootUndeployFailure = 47 => "BOOT_UNDEPLOY_FAILURE",
        BootStoppedFailure = 48 => "BOOT_STOPPED_FAILURE",
        PrologResumeFailure = 49 => "PROLOG_RESUME_FAILURE",
        PrologUndeployFailure = 50 => "PROLOG_UNDEPLOY_FAILURE",
        DiskSnapshotPoweroff = 51 => "DISK_SNAPSHOT_POWEROFF",
        DiskSnapshotRevertPoweroff = 52 => "DISK_SNAPSHOT_REVERT_POWEROFF",
        DiskSnapshotDeletePoweroff = 53 => "DISK_SNAPSHOT_DELETE_POWEROFF",
        DiskSnapshotSuspended = 54 => "DISK_SNAPSHOT_SUSPENDED",
        DiskSnapshotRevertSuspended = 55 => "DISK_SNAPSHOT_REVERT_SUSPENDED",
        DiskSnapshotDeleteSuspended = 56 => "DISK_SNAPSHOT_DELETE_SUSPENDED",
        DiskSnapshot = 57 => "DISK_SNAPSHOT",
        DiskSnapshotRevert = 58 => "DISK_SNAPSHOT_REVERT",
        DiskSnapshotDelete = 59 => "DISK_SNAPSHOT_DELETE",
        PrologMigrateUnknown = 60 => "PROLOG_MIGRATE_UNKNOWN",
        PrologMigrateUnknownFailure = 61 => "PROLOG_MIGRATE_UNKNOWN_FAILURE",
        DiskResize = 62 => "DISK_RESIZE",
        DiskResizePoweroff = 63 => "DISK_RESIZE_POWEROFF",
        DiskResizeUndeployed = 64 => "DISK_RESIZE_UNDEPLOYED",
        HotplugNicPoweroff = 65 => "HOTPLUG_NIC_POWEROFF",
        HotplugResize = 66 => "HOTPLUG_RESIZE",
        HotplugSaveasUndeployed = 67 => "HOTPLUG_SAVEAS_UNDEPLOYED",
        HotplugSaveasStopped = 68 => "HOTPLUG_SAVEAS_STOPPED",
        Backup = 69 => "BACKUP",
        BackupPoweroff = 70 => "BACKUP_POWEROFF",
        Restore = 71 => "RESTORE",
    }
);

one_enum!(
    /// Host STATE.
    HostState {
        Init = 0 => "INIT",
        MonitoringMonitored = 1 => "MONITORING_MONITORED",
        Monitored = 2 => "MONITORED",
        Error = 3 => "ERROR",
        Disabled = 4 => "DISABLED",
        MonitoringError = 5 => "MONITORING_ERROR",
        MonitoringInit = 6 => "MONITORING_INIT",
        MonitoringDisabled = 7 => "MONITORING_DISABLED",
        Offline = 8 => "OFFLINE",
    }
);

one_enum!(
    /// Image STATE.
    ImageState {
        Init = 0 => "INIT",
        Ready = 1 => "READY",
        Used = 2 => "USED",
        Disabled = 3 => "DISABLED",
        Locked = 4 => "LOCKED",
        Error = 5 => "ERROR",
        Clone = 6 => "CLONE",
        Delete = 7 => "DELETE",
        UsedPers = 8 => "USED_PERS",
        LockedUsed = 9 => "LOCKED_USED",
        LockedUsedPers = 10 => "LOCKED_USED_PERS",
    }
);

one_enum!(
    /// Image TYPE.
    ImageType {
        Os = 0 => "OS",
        Cdrom = 1 => "CDROM",
        Datablock = 2 => "DATABLOCK",
        Kernel = 3 => "KERNEL",
        Ramdisk = 4 => "RAMDISK",
        Context = 5 => "CONTEXT",
        Backup = 6 => "BACKUP",
        Filesystem = 7 => "FILESYSTEM",
    }
);

one_enum!(
    /// DISK_TYPE of images and datastores.
    DiskType {
        File = 0 => "FILE",
        CdRom = 1 => "CD_ROM",
        Block = 2 => "BLOCK",
        Rbd = 3 => "RBD",
        RbdCdrom = 4 => "RBD_CDROM",
        Gluster = 5 => "GLUSTER",
        GlusterCdrom = 6 => "GLUSTER_CDROM",
        Sheepdog = 7 => "SHEEPDOG",
        SheepdogCdrom = 8 => "SHEEPDOG_CDROM",
        Iscsi = 9 => "ISCSI",
        FileSystem = 10 => "FILE_SYSTEM",
    }
);

one_enum!(
    /// Datastore TYPE.
    DatastoreType {
        Image = 0 => "IMAGE_DS",
        System = 1 => "SYSTEM_DS",
        File = 2 => "FILE_DS",
        Backup = 3 => "BACKUP_DS",
    }
);

one_enum!(
    /// Datastore STATE.
    DatastoreState {
        Ready = 0 => "READY",
        Disabled = 1 => "DISABLED",
    }
);

one_enum!(
    /// Virtual network STATE.
    VnetState {
        Init = 0 => "INIT",
        Ready = 1 => "READY",
        LockCreate = 2 => "LOCK_CREATE",
        LockDelete = 3 => "LOCK_DELETE",
        Done = 4 => "DONE",
        Error = 5 => "ERROR",
        UpdateFailure = 6 => "UPDATE_FAILURE",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        for s in LcmState::ALL {
            assert_eq!(LcmState::from_num(s.num() as i64), Some(*s));
            assert_eq!(LcmState::from_name(s.name()), Some(*s));
        }
        assert_eq!(VmState::Poweroff.num(), 8);
        assert_eq!(LcmState::PrologMigrateUnknownFailure.num(), 61);
        assert_eq!(LcmState::Restore.num(), 71);
        assert_eq!(HostState::Offline.num(), 8);
        assert_eq!(ImageState::LockedUsedPers.num(), 10);
        assert_eq!(
            DatastoreType::from_name("system_ds"),
            Some(DatastoreType::System)
        );
    }
}
