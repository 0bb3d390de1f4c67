// Sum: accepted (C++20: std::ranges, std::span).
#include <algorithm>
#include <iostream>
#include <numeric>
#include <span>
#include <vector>

int main() {
    std::ios::sync_with_stdio(false);
    std::cin.tie(nullptr);
    int n;
    std::cin >> n;
    std::vector<long long> a(n);
    std::ranges::for_each(a, [](long long &x) { std::cin >> x; });
    std::span<const long long> view{a};
    std::cout << std::accumulate(view.begin(), view.end(), 0LL) << '\n';
}
