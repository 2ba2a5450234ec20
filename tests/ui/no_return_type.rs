use syncmemo::memoize;

#[memoize]
fn log(message: &str) {
    println!("{message}");
}

fn main() {}
