# Sum: accepted.
data = $stdin.read.split
n = data[0].to_i
puts data[1, n].sum(&:to_i)
