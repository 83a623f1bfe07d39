//! Test guest: allocates 1 MiB chunks and writes to every page of each, until growing linear
//! memory fails. The allocator then reports the failure and aborts, which traps.

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

fn main() {
    let mut chunks = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for page in chunk.chunks_mut(PAGE) {
            page[0] = 1;
        }
        chunks.push(std::hint::black_box(chunk));
    }
}
