# Sum: runtime error -- off-by-one index, an uncaught IndexError.
import sys


def main():
    data = sys.stdin.buffer.read().split()
    n = int(data[0])
    total = 0
    for i in range(1, n + 2):  # one too many
        total += int(data[i])
    print(total)


main()
