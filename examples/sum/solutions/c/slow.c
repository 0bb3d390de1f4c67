/* Sum: time limit -- correct, but recomputes every prefix sum: O(N^2). */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long *a = malloc(sizeof *a * (size_t)n);
    if (!a) return 1;
    for (int i = 0; i < n; i++)
        if (scanf("%lld", &a[i]) != 1) return 1;
    volatile long long prefix = 0; /* volatile: the loop cannot be optimised away */
    for (int i = 0; i < n; i++) {
        long long p = 0;
        for (int j = 0; j <= i; j++) p += a[j];
        prefix = p;
    }
    printf("%lld\n", prefix);
    free(a);
    return 0;
}
