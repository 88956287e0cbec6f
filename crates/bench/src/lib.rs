//! The parts of `fanout-bench` that its tests reach from outside the binary.
//!
//! The binary (`main.rs`) holds the harness and the load tester; this library
//! holds what is shared between them and worth testing on its own: the order
//! checker ([`order`]), used by the hub harness's `same_topic` scenario and by
//! every load-test client. It is not an API for users of fanout.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod order;
