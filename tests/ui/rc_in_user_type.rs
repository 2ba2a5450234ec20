use std::rc::Rc;

use syncmemo::memoize;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Config {
    name: Rc<str>,
}

#[memoize]
fn describe(config: Config) -> String {
    config.name.to_string()
}

#[memoize]
fn load(name: &str) -> Config {
    Config { name: name.into() }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Loader;

impl Loader {
    #[memoize]
    fn config(&self, name: String) -> Config {
        Config { name: name.into() }
    }
}

fn main() {}
