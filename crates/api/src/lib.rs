//! tmp
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/tradelog.v1.rs"));
}
