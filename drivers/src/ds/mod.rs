//! Datastore operations of the `fs` DS_MAD on image and file datastores (run by the frontend
//! agent): copy an image in, make an empty one, clone, delete, stat, capacity, image
//! snapshots. Filled by the storage work (issue 9).
