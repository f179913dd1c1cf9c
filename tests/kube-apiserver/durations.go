package main

// `kube-apiserver-harness durations`: reads one duration per line on
// standard input and prints what Go's time.ParseDuration makes of each:
// `ok <nanoseconds>` or `err`. herald's parser is held to this table.

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

func runDurations() error {
	scanner := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for scanner.Scan() {
		d, err := time.ParseDuration(scanner.Text())
		if err != nil {
			fmt.Fprintln(out, "err")
			continue
		}
		fmt.Fprintf(out, "ok %d\n", int64(d))
	}
	return scanner.Err()
}
