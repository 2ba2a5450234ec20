use syncmemo::memoize;

#[derive(Clone, PartialEq)]
struct Point {
    x: f64,
    y: f64,
}

#[memoize]
fn norm(label: &str, point: Point) -> f64 {
    let _ = label;
    (point.x * point.x + point.y * point.y).sqrt()
}

fn main() {}
