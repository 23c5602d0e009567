//! secretd: a pluggable secrets broker daemon.
pub mod proto {
    tonic::include_proto!("secretd.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("secretd_descriptor");
}
