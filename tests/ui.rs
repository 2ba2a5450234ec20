//! Compile errors of `#[memoize]` misuse: each points at the offending token (see the `.stderr`
//! files next to the cases in `tests/ui/`).

#[test]
fn misuse_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    // `shared` depends on the `redis` feature: without it, the option itself is the error; with
    // it, key and result types that serde cannot store are.
    #[cfg(not(feature = "redis"))]
    cases.compile_fail("tests/ui-no-redis/*.rs");
    #[cfg(feature = "redis")]
    cases.compile_fail("tests/ui-redis/*.rs");
}
