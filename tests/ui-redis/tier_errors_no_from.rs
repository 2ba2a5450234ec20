use syncmemo::memoize;

#[memoize(shared, tier_errors = "return")]
fn lookup(id: u32) -> Result<u32, String> {
    Ok(id)
}

fn main() {
    let _ = lookup(1);
}
