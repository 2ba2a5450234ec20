use syncmemo::memoize;

#[derive(Clone, Hash, PartialEq, Eq)]
struct Page(u32);

#[memoize(shared)]
fn render(page: Page) -> String {
    format!("{}", page.0)
}

fn main() {
    render(Page(1));
}

#[memoize(shared)]
fn page_of(n: u32) -> Page {
    Page(n)
}
