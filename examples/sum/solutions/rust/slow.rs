// Sum: time limit -- correct, but recomputes every prefix sum: O(N^2).
use std::io::{self, Read};

fn main() {
    let mut input = String::new();
    io::stdin().read_to_string(&mut input).unwrap();
    let mut tokens = input.split_ascii_whitespace();
    let n: usize = tokens.next().unwrap().parse().unwrap();
    let a: Vec<i64> = tokens.take(n).map(|t| t.parse().unwrap()).collect();
    let mut prefix: i64 = 0;
    for i in 0..n {
        let mut p: i64 = 0;
        for x in &a[..=i] {
            p += x;
        }
        // A volatile write: the optimiser may not drop the loop above.
        unsafe { std::ptr::write_volatile(&mut prefix, p) };
    }
    println!("{}", prefix);
}
