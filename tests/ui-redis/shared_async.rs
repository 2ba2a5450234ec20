use syncmemo::memoize;

#[memoize(shared, ttl = "10m")]
async fn render(page: String) -> String {
    page
}

fn main() {}
