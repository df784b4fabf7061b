// Command gobench runs chanq's runtime benchmarks in Go, row for row the
// same as bench/core_bench.c and in the same output format, so that
// bench/compare-go.sh can set the two side by side. Standard library only.
//
// Usage: gobench [-p GOMAXPROCS] [-r RUNS] [-s SCALE] [ROW...] | -l
//
// Output: a comment line "# ..." then one line per row, "name value unit",
// where value is the median of RUNS runs. Every unit is lower-is-better.
// -l lists the rows.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A row is one benchmark: run does one measured run and returns the value
// in unit. isolate rows run each time in a fresh child process, because
// they measure memory and memory left over from earlier runs would hide it.
type row struct {
	name    string
	unit    string
	isolate bool
	run     func(scale float64) float64
}

var rows = []row{
	{"pingpong_unbuf", "ns/handoff", false, benchPingPong},
	{"spsc_buf1024", "ns/item", false, benchSPSC},
	{"mpmc4x4_buf1024", "ns/item", false, benchMPMC},
	{"spawn_exit_1m", "ns/goroutine", false, benchSpawnChain},
	{"spawn_wait_1m", "ns/goroutine", false, benchSpawnWait},
	{"select4_uncontended", "ns/select", false, benchSelectUncontended},
	{"select4_blocking", "ns/select", false, benchSelectBlocking},
	{"ctx_cancel_fanout_10k", "ns/woken", false, benchCancelFanout},
	{"sleep_100k_10ms", "ms/total", false, benchSleep},
	{"rss_parked_100k", "KiB/goroutine", true, benchRSS},
}

// count scales an iteration count, keeping at least min.
func count(n int, scale float64, min int) int {
	c := int(float64(n) * scale)
	if c < min {
		c = min
	}
	return c
}

func nsPer(el time.Duration, n int) float64 {
	return float64(el.Nanoseconds()) / float64(n)
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "gobench: "+format+"\n", a...)
	os.Exit(1)
}

// benchPingPong: two goroutines bounce a value over two unbuffered
// channels; ns per one-way handoff.
func benchPingPong(scale float64) float64 {
	n := count(200000, scale, 1000)
	ping, pong := make(chan int), make(chan int)
	done := make(chan struct{})
	go func() {
		for v := range ping {
			pong <- v
		}
		close(done)
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	el := time.Since(t0)
	close(ping)
	<-done
	return nsPer(el, 2*n)
}

// benchSPSC: one producer, one consumer, a channel of capacity 1024.
func benchSPSC(scale float64) float64 {
	n := count(2000000, scale, 1000)
	c := make(chan int, 1024)
	t0 := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			c <- i
		}
		close(c)
	}()
	var sum int
	for v := range c {
		sum += v
	}
	el := time.Since(t0)
	if sum != n*(n-1)/2 {
		fail("spsc: checksum %d, want %d", sum, n*(n-1)/2)
	}
	return nsPer(el, n)
}

// benchMPMC: four producers and four consumers share one channel of
// capacity 1024; the last producer closes it.
func benchMPMC(scale float64) float64 {
	const np, nc = 4, 4
	per := count(2000000, scale, 1000) / np
	n := per * np
	c := make(chan int, 1024)
	var prod, cons sync.WaitGroup
	sums := make([]int, nc)
	t0 := time.Now()
	prod.Add(np)
	for p := 0; p < np; p++ {
		go func(base int) {
			for i := 0; i < per; i++ {
				c <- base + i
			}
			prod.Done()
		}(p * per)
	}
	cons.Add(nc)
	for k := 0; k < nc; k++ {
		go func(k int) {
			s := 0
			for v := range c {
				s += v
			}
			sums[k] = s
			cons.Done()
		}(k)
	}
	prod.Wait()
	close(c)
	cons.Wait()
	el := time.Since(t0)
	sum := 0
	for _, s := range sums {
		sum += s
	}
	if sum != n*(n-1)/2 {
		fail("mpmc: checksum %d, want %d", sum, n*(n-1)/2)
	}
	return nsPer(el, n)
}

// benchSpawnChain: GOMAXPROCS chains in which each goroutine starts the
// next one and exits (the shape of Go's BenchmarkCreateGoroutines); ns per
// goroutine, 1M goroutines in all.
func benchSpawnChain(scale float64) float64 {
	procs := runtime.GOMAXPROCS(0)
	per := count(1000000, scale, 1000) / procs
	var wg sync.WaitGroup
	var step func(left int)
	step = func(left int) {
		if left == 0 {
			wg.Done()
			return
		}
		go step(left - 1)
	}
	t0 := time.Now()
	wg.Add(procs)
	for i := 0; i < procs; i++ {
		go step(per - 1)
	}
	wg.Wait()
	return nsPer(time.Since(t0), per*procs)
}

// benchSpawnWait: one goroutine starts 1M goroutines in batches of 10,000,
// each of which calls Done on the batch's wait group; ns per goroutine.
func benchSpawnWait(scale float64) float64 {
	const batch = 10000
	batches := count(1000000, scale, batch) / batch
	var wg sync.WaitGroup
	t0 := time.Now()
	for b := 0; b < batches; b++ {
		wg.Add(batch)
		for i := 0; i < batch; i++ {
			go wg.Done()
		}
		wg.Wait()
	}
	return nsPer(time.Since(t0), batches*batch)
}

// benchSelectUncontended: each of GOMAXPROCS goroutines owns a ring of four
// channels of capacity 1 holding one token; every select receives the token
// from whichever channel has it and passes it to the next. Exactly one case
// is ready each time (Go's BenchmarkSelectUncontended, with four cases).
func benchSelectUncontended(scale float64) float64 {
	procs := runtime.GOMAXPROCS(0)
	per := count(2000000, scale, 1000) / procs
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(procs)
	for p := 0; p < procs; p++ {
		go func() {
			var c [4]chan int
			for i := range c {
				c[i] = make(chan int, 1)
			}
			c[0] <- 0
			for i := 0; i < per; i++ {
				select {
				case v := <-c[0]:
					c[1] <- v
				case v := <-c[1]:
					c[2] <- v
				case v := <-c[2]:
					c[3] <- v
				case v := <-c[3]:
					c[0] <- v
				}
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return nsPer(time.Since(t0), per*procs)
}

// benchSelectBlocking: a producer sends round-robin on four unbuffered
// channels and a consumer selects over all four, so every select parks or
// meets a parked sender; ns per select.
func benchSelectBlocking(scale float64) float64 {
	n := count(500000, scale, 1000)
	var c [4]chan int
	for i := range c {
		c[i] = make(chan int)
	}
	t0 := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			c[i&3] <- i
		}
	}()
	sum := 0
	for i := 0; i < n; i++ {
		select {
		case v := <-c[0]:
			sum += v
		case v := <-c[1]:
			sum += v
		case v := <-c[2]:
			sum += v
		case v := <-c[3]:
			sum += v
		}
	}
	el := time.Since(t0)
	if sum != n*(n-1)/2 {
		fail("select4_blocking: checksum %d, want %d", sum, n*(n-1)/2)
	}
	return nsPer(el, n)
}

// benchCancelFanout: 10,000 goroutines wait on one context's Done channel;
// time from cancel until the last has woken and counted down; ns per
// goroutine woken.
func benchCancelFanout(scale float64) float64 {
	n := count(10000, scale, 100)
	ctx, cancel := context.WithCancel(context.Background())
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-ctx.Done()
			done.Done()
		}()
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond) // let the last ones park
	t0 := time.Now()
	cancel()
	done.Wait()
	return nsPer(time.Since(t0), n)
}

// benchSleep: 100,000 goroutines each sleep 10 ms; wall time in ms from the
// first start until the last has finished (10 ms is the floor).
func benchSleep(scale float64) float64 {
	n := count(100000, scale, 100)
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			time.Sleep(10 * time.Millisecond)
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / 1e6
}

// residentPages reads the resident set size, in pages, from /proc/self/statm.
func residentPages() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		fail("%v", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		fail("unexpected /proc/self/statm: %q", b)
	}
	v, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		fail("%v", err)
	}
	return v
}

// benchRSS: resident memory added by 100,000 goroutines parked on a
// channel receive, in KiB per goroutine (run in a fresh process).
func benchRSS(scale float64) float64 {
	n := count(100000, scale, 100)
	runtime.GC()
	before := residentPages()
	block := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-block
			done.Done()
		}()
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond)
	after := residentPages()
	close(block)
	done.Wait()
	return float64((after-before)*int64(os.Getpagesize())) / 1024 / float64(n)
}

func median(v []float64) float64 {
	sort.Float64s(v)
	m := len(v) / 2
	if len(v)%2 == 1 {
		return v[m]
	}
	return (v[m-1] + v[m]) / 2
}

// runIsolated runs one run of r in a child process and returns its value.
func runIsolated(r row, procs int, scale float64) float64 {
	self, err := os.Executable()
	if err != nil {
		fail("%v", err)
	}
	out, err := exec.Command(self, "-child", r.name, "-p", strconv.Itoa(procs),
		"-s", strconv.FormatFloat(scale, 'g', -1, 64)).Output()
	if err != nil {
		fail("%s: child: %v", r.name, err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		fail("%s: child printed %q", r.name, out)
	}
	return v
}

func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			return v
		}
	}
	return def
}

func main() {
	procs := flag.Int("p", 0, "GOMAXPROCS (default: $GOMAXPROCS, else the CPU count)")
	runs := flag.Int("r", envInt("BENCH_RUNS", 5), "runs per row; the median is printed")
	scale := flag.Float64("s", 1, "scale every iteration count (for quick checks)")
	child := flag.String("child", "", "internal: run one run of this row and print its value")
	list := flag.Bool("l", false, "list the rows and exit")
	flag.Parse()
	if *list {
		for _, r := range rows {
			fmt.Println(r.name)
		}
		return
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	p := runtime.GOMAXPROCS(0)

	if *child != "" {
		for _, r := range rows {
			if r.name == *child {
				fmt.Printf("%.3f\n", r.run(*scale))
				return
			}
		}
		fail("unknown row %q", *child)
	}

	want := map[string]bool{}
	for _, a := range flag.Args() {
		found := false
		for _, r := range rows {
			found = found || r.name == a
		}
		if !found {
			fail("unknown row %q", a)
		}
		want[a] = true
	}
	fmt.Printf("# gobench go=%s gomaxprocs=%d runs=%d scale=%g\n",
		runtime.Version(), p, *runs, *scale)
	for _, r := range rows {
		if len(want) > 0 && !want[r.name] {
			continue
		}
		v := make([]float64, 0, *runs)
		for i := 0; i < *runs; i++ {
			if r.isolate {
				v = append(v, runIsolated(r, p, *scale))
			} else {
				v = append(v, r.run(*scale))
			}
		}
		fmt.Printf("%-24s %12.1f %s\n", r.name, median(v), r.unit)
	}
}
