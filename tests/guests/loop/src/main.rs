//! Test guest: spins the CPU forever without output, so only the host's deadline can end it.

fn main() {
    let mut spins = 0u64;
    loop {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}
