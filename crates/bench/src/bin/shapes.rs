//! Prints the masked shape of every line read from stdin (a debugging aid for the masker).
use std::io::BufRead;

fn main() {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines().map_while(Result::ok) {
        let mut out = Vec::new();
        for token in line.split_ascii_whitespace() {
            opsloop_logs::mask::mask_token(token.as_bytes(), &mut out);
            out.push(b' ');
        }
        println!("{}", String::from_utf8_lossy(&out));
    }
}
