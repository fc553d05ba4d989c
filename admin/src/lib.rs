//! ausweep's admin side, what a lab admin runs against a coordinator or its store: the
//! connection, the admin verbs and their views, the live view, the report and the Slurm
//! launcher. The binary's flags fill its plain option structs; nothing here knows the CLI.

pub mod conn;
pub mod launch;
pub mod report;
pub mod verbs;
pub mod views;
pub mod watch;

pub use conn::Conn;
