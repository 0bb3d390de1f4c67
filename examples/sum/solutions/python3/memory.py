# Sum: memory limit -- allocates and touches 640 MiB before answering.
import sys


def main():
    ballast = b"\x01" * (640 << 20)  # bytes repetition writes every page
    data = sys.stdin.buffer.read().split()
    n = int(data[0])
    print(sum(map(int, data[1:n + 1])) + ballast[-1] - 1)


main()
