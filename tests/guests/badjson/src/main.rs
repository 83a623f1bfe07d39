//! Test guest: answers with a body that is not a JSON envelope.

fn main() {
    print!("this is not json");
}
