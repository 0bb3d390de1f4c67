# Sum: time limit -- correct, but recomputes every prefix sum: O(N^2).
# (Reads in 64 KiB chunks like correct.py: it must run out of time, not memory.)
import sys


def read_numbers():
    stdin = sys.stdin.buffer
    left = int(stdin.readline())
    numbers = []
    carry = b""
    while left > 0:
        chunk = stdin.read(1 << 16)
        if not chunk:
            break
        data = carry + chunk
        parts = data.split()
        carry = b"" if data[-1:].isspace() or not parts else parts.pop()
        parts = parts[:left]
        left -= len(parts)
        numbers.extend(map(int, parts))
    if left > 0 and carry:
        numbers.append(int(carry))
    return numbers


def main():
    a = read_numbers()
    prefix = 0
    for i in range(len(a)):
        p = 0
        for j in range(i + 1):
            p += a[j]
        prefix = p
    print(prefix)


main()
