// Sum: time limit -- correct, but recomputes every prefix sum: O(N^2).
#include <iostream>
#include <vector>

int main() {
    std::ios::sync_with_stdio(false);
    std::cin.tie(nullptr);
    int n;
    std::cin >> n;
    std::vector<long long> a(n);
    for (auto &x : a) std::cin >> x;
    volatile long long prefix = 0; // volatile: the loop cannot be optimised away
    for (int i = 0; i < n; i++) {
        long long p = 0;
        for (int j = 0; j <= i; j++) p += a[j];
        prefix = p;
    }
    std::cout << prefix << '\n';
}
