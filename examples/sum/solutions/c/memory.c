/* Sum: memory limit -- allocates and touches 640 MiB before answering. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BYTES ((size_t)640 << 20)

int main(void) {
    unsigned char *buf = malloc(BYTES);
    if (!buf) return 1;
    memset(buf, 1, BYTES); /* every page written: resident */
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long sum = 0;
    for (int i = 0; i < n; i++) {
        long long x;
        if (scanf("%lld", &x) != 1) return 1;
        sum += x;
    }
    /* buf[BYTES - 1] is 1: keeps the buffer alive, prints the right sum. */
    printf("%lld\n", sum + buf[BYTES - 1] - 1);
    free(buf);
    return 0;
}
