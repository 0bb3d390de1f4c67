// Sum: accepted. fmt.Fscan is too slow for 2e6 numbers; scan words instead.
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
	var sum int64
	for i := 0; i < n && sc.Scan(); i++ {
		x, _ := strconv.ParseInt(sc.Text(), 10, 64)
		sum += x
	}
	fmt.Println(sum)
}
