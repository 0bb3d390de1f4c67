# Sum: accepted. PyPy keeps 2e6 small bytes objects far above 256 MiB when
# the whole input is split at once, so read and add it in 64 KiB chunks.
import sys


def main():
    stdin = sys.stdin.buffer
    left = int(stdin.readline())
    total = 0
    carry = b""
    while left > 0:
        chunk = stdin.read(1 << 16)
        if not chunk:
            break
        data = carry + chunk
        parts = data.split()
        # A number cut at the end of the chunk is finished by the next one.
        carry = b"" if data[-1:].isspace() or not parts else parts.pop()
        parts = parts[:left]
        left -= len(parts)
        total += sum(map(int, parts))
    if left > 0 and carry:
        total += int(carry)
    print(total)


main()
