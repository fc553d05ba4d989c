//! `ausweep weights fetch` (download, pinned hash, convert) and `ausweep weights import` (a file
//! the user has): each file checked against its network, tensor by tensor, before it is installed
//! in the weights directory (`ausweep_weights`).

pub mod fetch;
pub mod import;
