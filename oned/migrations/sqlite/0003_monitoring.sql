-- Monitoring history (docs/monitoring.md, "History"): one row per kept sample, written in
-- batches by oned's flusher; rows older than the expiration time are deleted by the flush.
-- body: the sample as JSON (oned reads it back at start).
CREATE TABLE host_monitoring (
    hid BIGINT NOT NULL,
    last_mon_time BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (hid, last_mon_time)
);
CREATE INDEX host_monitoring_time ON host_monitoring (last_mon_time);

CREATE TABLE vm_monitoring (
    vmid BIGINT NOT NULL,
    last_poll BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (vmid, last_poll)
);
CREATE INDEX vm_monitoring_time ON vm_monitoring (last_poll);
