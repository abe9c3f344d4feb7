//! The CONTEXT CD: `context.sh` (and FILES_DS files) in an ISO 9660 image labelled CONTEXT.
//! Filled by the storage work (issue 9), which moves it here from the node agent.
