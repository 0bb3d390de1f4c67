# Sum: memory limit -- allocates and touches 640 MiB before answering.
ballast = "\x01" * (640 << 20) # string repetition writes every page
data = $stdin.read.split
n = data[0].to_i
puts data[1, n].sum(&:to_i) + ballast.getbyte(-1) - 1
