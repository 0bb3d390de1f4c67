// Sum: wrong answer -- a 32-bit accumulator overflows past 2^31 - 1.
#include <cstdint>
#include <iostream>

int main() {
    std::ios::sync_with_stdio(false);
    std::cin.tie(nullptr);
    int n;
    std::cin >> n;
    std::uint32_t sum = 0; // unsigned: wraps deterministically, no UB
    for (int i = 0; i < n; i++) {
        int x;
        std::cin >> x;
        sum += static_cast<std::uint32_t>(x);
    }
    std::cout << static_cast<std::int32_t>(sum) << '\n';
}
