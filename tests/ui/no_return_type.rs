use syncmap::memoize;

#[memoize]
fn log(message: &str) {
    println!("{message}");
}

fn main() {}
