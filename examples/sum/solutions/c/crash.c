/* Sum: runtime error -- dereferences a null pointer (SIGSEGV). */
#include <stdio.h>

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long *volatile sums = NULL; /* "forgot" to allocate */
    sums[0] = 0;
    for (int i = 0; i < n; i++) {
        long long x;
        if (scanf("%lld", &x) != 1) return 1;
        sums[0] += x;
    }
    printf("%lld\n", sums[0]);
    return 0;
}
