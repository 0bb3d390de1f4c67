# Sum: time limit -- correct, but recomputes every prefix sum: O(N^2).
import sys


def main():
    data = sys.stdin.buffer.read().split()
    n = int(data[0])
    a = [int(x) for x in data[1:n + 1]]
    prefix = 0
    for i in range(n):
        p = 0
        for j in range(i + 1):
            p += a[j]
        prefix = p
    print(prefix)


main()
