// Sum: runtime error -- vector::at out of range, an uncaught exception (SIGABRT).
#include <iostream>
#include <vector>

int main() {
    std::ios::sync_with_stdio(false);
    std::cin.tie(nullptr);
    int n;
    std::cin >> n;
    std::vector<long long> a(n);
    for (int i = 0; i <= n; i++) std::cin >> a.at(i); // off by one: i == n throws
    long long sum = 0;
    for (auto x : a) sum += x;
    std::cout << sum << '\n';
}
