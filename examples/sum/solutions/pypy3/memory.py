# Sum: memory limit -- allocates and touches 640 MiB before answering.
import sys


def main():
    data = sys.stdin.buffer.read().split()
    n = int(data[0])
    # Sized from the input, so no compiler can fold it into a constant.
    ballast = bytearray((640 << 20) + (n & 1))
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    print(sum(map(int, data[1:n + 1])) + ballast[-4096] - 1)


main()
