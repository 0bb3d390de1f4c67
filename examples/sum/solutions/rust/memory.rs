// Sum: memory limit -- allocates and touches 640 MiB before answering.
use std::io::{self, Read};

fn main() {
    let ballast = vec![1u8; 640 << 20]; // non-zero fill: every page written
    let mut input = String::new();
    io::stdin().read_to_string(&mut input).unwrap();
    let mut tokens = input.split_ascii_whitespace();
    let n: usize = tokens.next().unwrap().parse().unwrap();
    let sum: i64 = tokens.take(n).map(|t| t.parse::<i64>().unwrap()).sum();
    println!("{}", sum + i64::from(ballast[ballast.len() - 1]) - 1);
}
