// Sum: memory limit -- allocates and touches 640 MiB before answering.
#include <iostream>
#include <vector>

int main() {
    std::vector<unsigned char> buf(std::size_t{640} << 20, 1); // filled: resident
    std::ios::sync_with_stdio(false);
    std::cin.tie(nullptr);
    int n;
    std::cin >> n;
    long long sum = 0;
    for (int i = 0; i < n; i++) {
        long long x;
        std::cin >> x;
        sum += x;
    }
    std::cout << sum + buf.back() - 1 << '\n';
}
