use std::fmt::Debug;

#[syncmemo::memoize]
fn describe(x: &dyn Debug) -> String {
    format!("{x:?}")
}

fn main() {}
