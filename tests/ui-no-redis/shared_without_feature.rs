use syncmemo::memoize;

#[memoize(shared, ttl = "10m")]
fn render(page: &str) -> String {
    page.to_uppercase()
}

fn main() {
    render("home");
}
