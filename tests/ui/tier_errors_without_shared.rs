use syncmemo::memoize;

#[memoize(tier_errors = "return")]
fn lookup(id: u32) -> Result<u32, String> {
    Ok(id)
}

fn main() {}
