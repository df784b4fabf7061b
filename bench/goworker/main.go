// Command goworker drives the job cycle submit -> fetch -> ack through the
// Go client: P producer connections pipelining submits, and a chanq.Worker
// of C slots acking every job. It prints one line in the form of `chanq
// loadtest`'s acked line, so that bench/goworker.sh can set the two side by
// side:
//
//	acked N in T s: X jobs/s (cycles: submit -> fetch -> ack)
//
// where T runs from the first submit until every submitted job is acked.
//
// Usage: goworker -server HOST:PORT [-p 8] [-c 8] [-d 10] [-window 64]
// [-prefetch 1] [-payload 100] [-capacity 10000] [-drain 30]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"chanq.invalid/chanq"
)

func main() {
	server := flag.String("server", "127.0.0.1:7420", "chanqd address")
	producers := flag.Int("p", 8, "producer connections")
	workers := flag.Int("c", 8, "worker slots")
	seconds := flag.Float64("d", 10, "produce for this many seconds")
	window := flag.Int("window", 64, "submits in flight per producer")
	size := flag.Int("payload", 100, "payload bytes")
	capacity := flag.Int("capacity", 10000, "queue capacity")
	drain := flag.Float64("drain", 30, "seconds to wait for the acks after producing")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	prefetch := flag.Int("prefetch", 0, "Worker.Prefetch (0: the Worker's default)")
	poll := flag.Bool("poll", false, "the Worker fetches (Worker.Poll) instead of consuming")
	flag.Parse()

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	queue := fmt.Sprintf("goworker-%d", os.Getpid())
	admin, err := chanq.Dial(ctx, *server, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Declare(ctx, queue, &chanq.QueueOptions{Capacity: *capacity}); err != nil {
		log.Fatal(err)
	}
	payload := json.RawMessage(`"` + strings.Repeat("x", *size-2) + `"`)

	var acked int64
	w := &chanq.Worker{Addr: *server, Queues: []string{queue}, Concurrency: *workers, Prefetch: *prefetch, Poll: *poll,
		Handler: func(ctx context.Context, job *chanq.Job) (any, error) {
			atomic.AddInt64(&acked, 1)
			return nil, nil
		},
		OnError: func(err error) { log.Print(err) }}
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()

	start := time.Now()
	until := start.Add(time.Duration(*seconds * float64(time.Second)))
	var submitted int64
	var wg sync.WaitGroup
	for p := 0; p < *producers; p++ {
		c, err := chanq.Dial(ctx, *server, &chanq.Options{MaxInFlight: *window})
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		for i := 0; i < *window; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(until) {
					if _, err := c.Submit(ctx, queue, payload, nil); err != nil {
						log.Fatal(err)
					}
					atomic.AddInt64(&submitted, 1)
				}
			}()
		}
	}
	wg.Wait()
	produced := time.Since(start)
	limit := time.Now().Add(time.Duration(*drain * float64(time.Second)))
	for {
		st, err := admin.QueueStats(ctx, queue)
		if err != nil {
			log.Fatal(err)
		}
		if st.Acked >= submitted || time.Now().After(limit) {
			acked = st.Acked
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start)
	stopWorker()
	if err := <-workerDone; err != nil {
		log.Fatal(err)
	}
	fmt.Printf("submitted   %d in %.1f s: %.0f jobs/s\n", submitted, produced.Seconds(), float64(submitted)/produced.Seconds())
	fmt.Printf("acked       %d in %.1f s: %.0f jobs/s (cycles: submit -> fetch -> ack)\n", acked, el.Seconds(), float64(acked)/el.Seconds())
}
