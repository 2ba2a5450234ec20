#[derive(Clone, PartialEq)]
struct Shape {
    sides: f64,
}

impl Shape {
    #[syncmemo::memoize]
    fn area(&self) -> f64 {
        self.sides * self.sides
    }
}

fn main() {}
