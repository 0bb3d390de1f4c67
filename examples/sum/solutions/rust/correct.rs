// Sum: accepted.
use std::io::{self, Read, Write};

fn main() {
    let mut input = String::new();
    io::stdin().read_to_string(&mut input).unwrap();
    let mut tokens = input.split_ascii_whitespace();
    let n: usize = tokens.next().unwrap().parse().unwrap();
    let sum: i64 = tokens.take(n).map(|t| t.parse::<i64>().unwrap()).sum();
    writeln!(io::stdout(), "{}", sum).unwrap();
}
