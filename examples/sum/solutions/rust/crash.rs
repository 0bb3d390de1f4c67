// Sum: runtime error -- off-by-one index, a panic (exit code 101).
use std::io::{self, Read};

fn main() {
    let mut input = String::new();
    io::stdin().read_to_string(&mut input).unwrap();
    let mut tokens = input.split_ascii_whitespace();
    let n: usize = tokens.next().unwrap().parse().unwrap();
    let a: Vec<i64> = tokens.take(n).map(|t| t.parse().unwrap()).collect();
    let mut sum: i64 = 0;
    for i in 0..=n {
        sum += a[i]; // a[n] is out of bounds
    }
    println!("{}", sum);
}
