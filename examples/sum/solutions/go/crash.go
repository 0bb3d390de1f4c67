// Sum: runtime error -- off-by-one index, a panic (exit code 2).
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
	a := make([]int64, n)
	for i := 0; i < n && sc.Scan(); i++ {
		a[i], _ = strconv.ParseInt(sc.Text(), 10, 64)
	}
	var sum int64
	for i := 0; i <= n; i++ {
		sum += a[i] // a[n] is out of range
	}
	fmt.Println(sum)
}
