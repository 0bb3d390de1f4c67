# Sum: runtime error -- an uncaught NoMethodError (reads past the end of the input).
data = $stdin.read.split
n = data[0].to_i
total = 0
(1..n + 1).each { |i| total += Integer(data[i].strip) } # data[n + 1] is nil
puts total
