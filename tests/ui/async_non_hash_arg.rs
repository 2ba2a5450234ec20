use syncmemo::memoize;

#[memoize]
async fn scale(x: f32, factor: u32) -> f64 {
    f64::from(x) * f64::from(factor)
}

fn main() {}
