-- Host failure recovery (docs/host-recovery.md).
-- One row per recovery action (fence, and per VM: resched, recreate, leave), kept up to
-- recovery.log_retention rows; vm_id is -1 for host-level actions.
CREATE TABLE host_recovery_log (
    id BIGINT PRIMARY KEY NOT NULL,
    host_id BIGINT NOT NULL,
    host_name TEXT NOT NULL,
    vm_id BIGINT NOT NULL,
    time BIGINT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX host_recovery_log_host ON host_recovery_log (host_id, id);

-- Hosts seen in ERROR: since when (the grace period counts from there, across restarts)
-- and how far their recovery went, so a restart neither resets nor repeats it.
CREATE TABLE host_recovery_episode (
    host_id BIGINT PRIMARY KEY NOT NULL,
    since_ms BIGINT NOT NULL,
    stage TEXT NOT NULL,
    updated BIGINT NOT NULL
);
