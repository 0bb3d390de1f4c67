// Sum: wrong answer -- a 32-bit accumulator wraps past 2^31 - 1.
use std::io::{self, Read};

fn main() {
    let mut input = String::new();
    io::stdin().read_to_string(&mut input).unwrap();
    let mut tokens = input.split_ascii_whitespace();
    let n: usize = tokens.next().unwrap().parse().unwrap();
    let mut sum: i32 = 0;
    for t in tokens.take(n) {
        sum = sum.wrapping_add(t.parse::<i32>().unwrap());
    }
    println!("{}", sum);
}
