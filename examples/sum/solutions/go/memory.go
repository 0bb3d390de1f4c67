// Sum: memory limit -- allocates and touches 640 MiB before answering.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
)

func main() {
	ballast := make([]byte, 640<<20)
	for i := range ballast {
		ballast[i] = 1 // every page written: resident
	}
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
	fmt.Println(sum + int64(ballast[len(ballast)-1]) - 1)
}
