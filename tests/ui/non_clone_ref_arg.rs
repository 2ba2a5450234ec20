#[derive(Hash, PartialEq, Eq)]
struct Config {
    level: u8,
}

#[syncmemo::memoize]
fn threshold(config: &Config) -> u32 {
    u32::from(config.level) * 10
}

fn main() {}
