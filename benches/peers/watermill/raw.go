package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
)

// rawProducer sends the drain's records (the same 200-byte payloads over 1,000 keys, with the 8
// CloudEvents headers eventbus writes) straight from memory with franz-go, idempotent with
// acks=all (its defaults), to a topic of its own: the fastest client's rate on this machine, a
// ceiling for both outboxes. The records are built before the clock starts, as the relay bench's
// raw rdkafka producer does. Prints "RESULT franz_eps=...".
func rawProducer(ctx context.Context, s settings) error {
	if err := createTopic(s); err != nil {
		return err
	}
	defer deleteTopic(s)
	records := make([]*kgo.Record, 0, s.events)
	for i := 1; i <= s.events; i++ {
		h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
		records = append(records, &kgo.Record{
			Topic: s.kafkaTopic,
			Key:   []byte("key-" + strconv.Itoa(i%1000)),
			Value: drainPayload(i),
			Headers: []kgo.RecordHeader{
				h("ce_specversion", "1.0"),
				h("ce_id", uuid.NewString()),
				h("ce_source", "bench"),
				h("ce_type", "bench.tick"),
				h("ce_time", time.Now().UTC().Format(time.RFC3339Nano)),
				h("content-type", "application/json"),
				h("ce_schemaversion", "1"),
				h("ce_category", "system"),
			},
		})
	}
	client, err := kgo.NewClient(
		kgo.SeedBrokers(s.brokers),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(time.Millisecond), // 1 ms, the linger of the figures in docs/benchmarks.md
		kgo.MaxBufferedRecords(s.events),
	)
	if err != nil {
		return fmt.Errorf("franz-go client: %w", err)
	}
	defer client.Close()
	// Connected before the clock starts, so the figure is a ceiling.
	if err := client.Ping(ctx); err != nil {
		return fmt.Errorf("franz-go ping: %w", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	started := time.Now()
	wg.Add(len(records))
	for _, r := range records {
		client.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	elapsed := time.Since(started)
	if failed != nil {
		return fmt.Errorf("franz-go produce: %w", failed)
	}
	eps := float64(s.events) / elapsed.Seconds()
	fmt.Printf("  raw franz-go producer: %d events in %v: %.0f events/s\n", s.events, elapsed.Round(time.Millisecond), eps)
	fmt.Printf("RESULT franz_eps=%.0f events=%d\n", eps, s.events)
	_ = os.Stdout.Sync()
	return nil
}
