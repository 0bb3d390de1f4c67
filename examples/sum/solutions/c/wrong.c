/* Sum: wrong answer -- a 32-bit accumulator overflows past 2^31 - 1. */
#include <stdio.h>

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    unsigned int sum = 0; /* unsigned: wraps deterministically, no UB */
    for (int i = 0; i < n; i++) {
        int x;
        if (scanf("%d", &x) != 1) return 1;
        sum += (unsigned int)x;
    }
    printf("%d\n", (int)sum);
    return 0;
}
