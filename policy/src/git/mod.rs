//! The git smart-HTTP pieces: request classification, pkt-line framing, the receive-pack
//! command list, and the replies gitgate sends itself.

pub mod lfs;
pub mod pktline;
pub mod receive_pack;
pub mod report;
pub mod request;
pub mod sideband;
