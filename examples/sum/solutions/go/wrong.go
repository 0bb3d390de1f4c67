// Sum: wrong answer -- an int32 accumulator wraps past 2^31 - 1.
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
	var sum int32
	for i := 0; i < n && sc.Scan(); i++ {
		x, _ := strconv.ParseInt(sc.Text(), 10, 32)
		sum += int32(x)
	}
	fmt.Println(sum)
}
