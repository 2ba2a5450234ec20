use syncmemo::memoize;

#[memoize]
async fn fill(buffer: &mut Vec<u8>, n: usize) -> usize {
    buffer.resize(n, 0);
    n
}

fn main() {}
