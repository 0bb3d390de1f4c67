// Sum: time limit -- correct, but recomputes every prefix sum: O(N^2).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
)

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sc.Split(bufio.ScanWords)
	sc.Scan()
	n, _ := strconv.Atoi(sc.Text())
	a := make([]int64, 0, n)
	for i := 0; i < n && sc.Scan(); i++ {
		x, _ := strconv.ParseInt(sc.Text(), 10, 64)
		a = append(a, x)
	}
	var prefix int64
	for i := range a {
		var p int64
		for j := 0; j <= i; j++ {
			p += a[j]
		}
		prefix = p
	}
	fmt.Println(prefix)
}
