pub use fanout_core::*;
