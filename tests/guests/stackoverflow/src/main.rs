//! Test guest: recurses without bound; `black_box` keeps the optimizer from turning the recursion
//! into a loop, so the call stack runs out and the guest traps.

use std::hint::black_box;

fn descend(depth: u64) -> u64 {
    if black_box(false) {
        return depth;
    }
    black_box(descend(black_box(depth + 1))) + depth
}

fn main() {
    black_box(descend(0));
}
