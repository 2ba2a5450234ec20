//! Compile errors of `#[memoize]` misuse: each points at the offending token (see the `.stderr`
//! files next to the cases in `tests/ui/`).

#[test]
fn misuse_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
