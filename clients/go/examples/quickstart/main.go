// Command quickstart submits a few jobs to chanqd and works them with a
// chanq.Worker: the producer and the worker of clients/go/README.md in one
// program.
//
// Usage: CHANQ_SERVER=127.0.0.1:7420 go run ./examples/quickstart [-n JOBS] [-queue NAME]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"chanq.invalid/chanq"
)

func main() {
	n := flag.Int("n", 10, "jobs to submit and work")
	queue := flag.String("queue", "quickstart", "queue to use")
	flag.Parse()
	addr := os.Getenv("CHANQ_SERVER")
	if addr == "" {
		addr = "127.0.0.1:7420"
	}
	opts := &chanq.Options{Token: os.Getenv("CHANQ_TOKEN")}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Producer: submit n jobs, then close the queue so the worker ends
	// once it is drained.
	c, err := chanq.Dial(ctx, addr, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ids := make([]string, *n)
	for i := range ids {
		if ids[i], err = c.Submit(ctx, *queue, map[string]string{"word": fmt.Sprint("job-", i)}, nil); err != nil {
			log.Fatal(err)
		}
	}
	if err := c.CloseQueue(ctx, *queue); err != nil {
		log.Fatal(err)
	}

	// Worker: 4 jobs at a time; each result is the upper-cased word.
	var done int64
	w := &chanq.Worker{Addr: addr, Options: opts, Queues: []string{*queue}, Concurrency: 4,
		Handler: func(ctx context.Context, job *chanq.Job) (any, error) {
			var p struct{ Word string }
			if err := job.Decode(&p); err != nil {
				return nil, &chanq.NackError{Err: err, Dead: true}
			}
			atomic.AddInt64(&done, 1)
			return strings.ToUpper(p.Word), nil
		}}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
	last, err := c.Wait(ctx, ids[len(ids)-1], 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("quickstart: %d jobs done, last result %s\n", atomic.LoadInt64(&done), last.Result)
}
