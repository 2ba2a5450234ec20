use std::rc::Rc;

#[syncmemo::memoize]
fn shout(text: Rc<String>) -> String {
    text.to_uppercase()
}

#[syncmemo::memoize]
fn share(text: &str) -> Rc<str> {
    Rc::from(text)
}

fn main() {}
