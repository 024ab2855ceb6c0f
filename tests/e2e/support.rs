//! End-to-end scenarios live in `e2e/main.rs` and its modules; this library target is empty on
//! purpose (a package needs one), and shared helpers belong in `custos-testkit`.
