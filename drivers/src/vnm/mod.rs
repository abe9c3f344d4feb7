//! Virtual network set-up on a host (VN_MAD `bridge`, `802.1Q`, `vxlan`) and security groups
//! with nftables. Filled by the network work (issue 10).
