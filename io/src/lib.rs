//! The bulwark driver layer.
//!
//! Today it holds what an idle worker sleeps on: a [`Parker`] with no lost
//! wake-up. The next step grows it into the driver proper (a mio reactor and a
//! timer wheel that an idle worker blocks in instead of a condvar), which is
//! why parking lives here and not in the executor: the executor asks the
//! driver layer to park, and whether that means a condvar or `mio::Poll::poll`
//! is this layer's business.

#![warn(missing_docs)]

mod park;

pub use park::{Parker, Unparker};
