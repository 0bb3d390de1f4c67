# Sum: wrong answer -- off by one, the last number is never added.
data = $stdin.read.split
n = data[0].to_i
puts data[1, n - 1].sum(&:to_i)
