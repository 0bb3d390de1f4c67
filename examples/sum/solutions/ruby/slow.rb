# Sum: time limit -- correct, but recomputes every prefix sum: O(N^2).
data = $stdin.read.split
n = data[0].to_i
a = data[1, n].map(&:to_i)
prefix = 0
n.times do |i|
  p = 0
  j = 0
  while j <= i
    p += a[j]
    j += 1
  end
  prefix = p
end
puts prefix
