// Command watermill-bench measures Watermill's SQL outbox (watermill-sql's PostgreSQL publisher and
// subscriber, the forwarder component, watermill-kafka's publisher) on the same PostgreSQL and
// Kafka, and with the same two figures, as eventbus's relay bench
// (eventbus-runtime/benches/relay.rs):
//
//  1. drain throughput: N events committed to Watermill's outbox table beforehand (through its
//     forwarder publisher, in transactions), then the forwarder started and timed until a consumer
//     has seen all N on the Kafka topic;
//  2. commit-to-ack latency at a steady rate: one event per committed transaction, timed from the
//     commit's return to a consumer's receipt (so it includes the consumer's fetch).
//
// It reads the services from EVENTBUS_TEST_DATABASE_URL and EVENTBUS_TEST_KAFKA_BROKERS (what
// scripts/services start prints) and its settings from the relay bench's variables
// (EVENTBUS_BENCH_EVENTS, _BATCH, _RATE, _SECONDS), which flags override. Every run uses tables
// and a topic of its own, and drops them at the end. It prints the figures and a last line
//
//	RESULT drain_eps=... p50_ms=... p95_ms=... p99_ms=... max_ms=... events=... latency_events=...
//
// for benches/peers/run to read.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"
)

// keyHeader is the metadata entry watermill-kafka's partitioning marshaler takes the Kafka key from.
const keyHeader = "partition_key"

type settings struct {
	url, brokers   string
	events         int
	batch          int
	rate           int
	seconds        int
	poll           time.Duration
	partitions     int
	insertPerTx    int
	consumerGroup  string
	forwarderTopic string
	kafkaTopic     string
}

func main() {
	s := settings{
		url:     os.Getenv("EVENTBUS_TEST_DATABASE_URL"),
		brokers: os.Getenv("EVENTBUS_TEST_KAFKA_BROKERS"),
	}
	flag.IntVar(&s.events, "events", envInt("EVENTBUS_BENCH_EVENTS", 200_000), "events in the drain run")
	flag.IntVar(&s.batch, "batch", envInt("EVENTBUS_BENCH_BATCH", 5000), "watermill-sql SubscribeBatchSize (rows per SELECT)")
	flag.IntVar(&s.rate, "rate", envInt("EVENTBUS_BENCH_RATE", 1000), "events/s in the latency run")
	flag.IntVar(&s.seconds, "seconds", envInt("EVENTBUS_BENCH_SECONDS", 10), "length of the latency run in seconds")
	flag.DurationVar(&s.poll, "poll", 10*time.Millisecond, "watermill-sql PollInterval (wait after an empty SELECT)")
	flag.IntVar(&s.partitions, "partitions", 8, "partitions of the Kafka topic")
	flag.IntVar(&s.insertPerTx, "prefill-tx", 1000, "events per transaction when prefilling the outbox")
	raw := flag.Bool("raw", false, "instead: send the drain's records with a bare franz-go producer (no database), a ceiling")
	flag.Parse()
	if s.url == "" || s.brokers == "" {
		fmt.Fprintln(os.Stderr, `watermill bench: set EVENTBUS_TEST_DATABASE_URL and EVENTBUS_TEST_KAFKA_BROKERS (eval "$(scripts/services start)")`)
		os.Exit(2)
	}
	run := randomHex(6)
	s.forwarderTopic = "peers_" + run // tables watermill_peers_<run>, watermill_offsets_peers_<run>
	s.kafkaTopic = "eventbus.peers.watermill." + run
	s.consumerGroup = "forwarder"
	if *raw {
		s.kafkaTopic = "eventbus.peers.franz." + run
		if err := rawProducer(context.Background(), s); err != nil {
			fmt.Fprintln(os.Stderr, "franz-go raw producer:", err)
			os.Exit(1)
		}
		return
	}
	if err := bench(context.Background(), s); err != nil {
		fmt.Fprintln(os.Stderr, "watermill bench:", err)
		os.Exit(1)
	}
}

func bench(ctx context.Context, s settings) (err error) {
	pool, err := pgxpool.New(ctx, s.url)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer pool.Close()
	schema := wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: s.batch}
	offsets := wsql.DefaultPostgreSQLOffsetsAdapter{}
	// Cleaning up is best effort: a failure is reported, but does not void the figures.
	defer func() {
		tables := schema.MessagesTable(s.forwarderTopic) + ", " + offsets.MessagesOffsetsTable(s.forwarderTopic)
		if _, err := pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+tables); err != nil {
			fmt.Fprintf(os.Stderr, "watermill bench: could not drop %s: %v\n", tables, err)
		}
	}()
	// The messages and offsets tables, created by Watermill's own schema initialisation (a
	// publisher on a transaction may not create them).
	initSub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), subscriberConfig(s, schema, offsets), nil)
	if err != nil {
		return err
	}
	if err := initSub.SubscribeInitialize(s.forwarderTopic); err != nil {
		return fmt.Errorf("create Watermill's tables: %w", err)
	}
	_ = initSub.Close()

	if err := createTopic(s); err != nil {
		return err
	}
	defer deleteTopic(s)

	// 1. Drain throughput.
	started := time.Now()
	if err := prefill(ctx, pool, s, schema); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, "ANALYZE "+schema.MessagesTable(s.forwarderTopic)); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "prefilled %d rows in %v\n", s.events, time.Since(started).Round(time.Millisecond))

	c, err := startConsumer(ctx, s)
	if err != nil {
		return err
	}
	defer c.close()

	started = time.Now()
	fwd, err := newForwarder(s, pool, schema, offsets)
	if err != nil {
		return err
	}
	fwdDone := make(chan error, 1)
	go func() { fwdDone <- fwd.Run(context.Background()) }()
	defer func() {
		err = errors.Join(err, fwd.Close(), <-fwdDone)
	}()
	select {
	case <-c.drained:
	case <-time.After(time.Duration(s.events/100+120) * time.Second):
		return fmt.Errorf("drain: %d of %d events seen on the topic in %v", c.drainSeen.Load(), s.events, time.Since(started))
	}
	drainEPS := float64(s.events) / time.Since(started).Seconds()
	payload := drainPayload(0)
	fmt.Printf("watermill bench: %d events of %d bytes, 1 forwarder, batch %d, poll %v\n", s.events, len(payload), s.batch, s.poll)
	fmt.Printf("  watermill forwarder drain: %9.0f events/s\n", drainEPS)

	// 2. Commit-to-ack latency at a steady rate, the forwarder still running.
	time.Sleep(500 * time.Millisecond)
	ms, err := latency(ctx, pool, s, schema, c)
	if err != nil {
		return err
	}
	pct := func(p float64) float64 { return ms[min(int(float64(len(ms))*p), len(ms)-1)] }
	fmt.Printf("  commit-to-ack at %d/s over %ds (%d events): p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		s.rate, s.seconds, len(ms), pct(0.50), pct(0.95), pct(0.99), ms[len(ms)-1])
	fmt.Printf("RESULT drain_eps=%.0f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f events=%d latency_events=%d\n",
		drainEPS, pct(0.50), pct(0.95), pct(0.99), ms[len(ms)-1], s.events, len(ms))
	return nil
}

// subscriberConfig is watermill-sql's subscriber as tuned for the bench: rows per SELECT and the
// wait after an empty SELECT set, everything else left at its default.
func subscriberConfig(s settings, schema wsql.DefaultPostgreSQLSchema, offsets wsql.DefaultPostgreSQLOffsetsAdapter) wsql.SubscriberConfig {
	return wsql.SubscriberConfig{
		ConsumerGroup:  s.consumerGroup,
		PollInterval:   s.poll,
		SchemaAdapter:  schema,
		OffsetsAdapter: offsets,
	}
}

// newForwarder builds the forwarder: watermill-sql's subscriber on the outbox table, watermill-kafka's
// publisher (a sarama SyncProducer) with acks from all in-sync replicas and idempotence, as
// eventbus's relay runs.
func newForwarder(s settings, pool *pgxpool.Pool, schema wsql.DefaultPostgreSQLSchema, offsets wsql.DefaultPostgreSQLOffsetsAdapter) (*forwarder.Forwarder, error) {
	logger := watermill.NewStdLogger(false, false)
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), subscriberConfig(s, schema, offsets), logger)
	if err != nil {
		return nil, err
	}
	sc := kafka.DefaultSaramaSyncPublisherConfig()
	sc.Version = sarama.V4_0_0_0 // the broker is Kafka 4.x, which dropped the old protocol versions
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1 // sarama requires it for an idempotent producer
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{
		Brokers: strings.Split(s.brokers, ","),
		Marshaler: kafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
			return msg.Metadata.Get(keyHeader), nil
		}),
		OverwriteSaramaConfig: sc,
	}, logger)
	if err != nil {
		return nil, err
	}
	return forwarder.NewForwarder(sub, pub, logger, forwarder.Config{
		ForwarderTopic: s.forwarderTopic,
		CloseTimeout:   5 * time.Second,
	})
}

// publishInTx writes msgs to the outbox in one committed transaction, the way an application does:
// Watermill's SQL publisher on the transaction, wrapped by the forwarder's publisher.
func publishInTx(ctx context.Context, pool *pgxpool.Pool, s settings, schema wsql.DefaultPostgreSQLSchema, msgs ...*message.Message) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	sqlPub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: schema}, nil)
	if err != nil {
		return err
	}
	pub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: s.forwarderTopic})
	if err := pub.Publish(s.kafkaTopic, msgs...); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// prefill commits s.events events, s.insertPerTx per transaction: over 1,000 keys, with the
// CloudEvents header set and the 200-byte JSON payload of the relay bench's rows.
func prefill(ctx context.Context, pool *pgxpool.Pool, s settings, schema wsql.DefaultPostgreSQLSchema) error {
	msgs := make([]*message.Message, 0, s.insertPerTx)
	for i := 1; i <= s.events; i++ {
		id := uuid.NewString()
		msg := message.NewMessage("d-"+strconv.Itoa(i), drainPayload(i))
		msg.Metadata = message.Metadata{
			keyHeader:          "key-" + strconv.Itoa(i%1000),
			"ce_specversion":   "1.0",
			"ce_id":            id,
			"ce_source":        "bench",
			"ce_type":          "bench.tick",
			"ce_time":          time.Now().UTC().Format(time.RFC3339Nano),
			"content-type":     "application/json",
			"ce_schemaversion": "1",
			"ce_category":      "system",
		}
		msgs = append(msgs, msg)
		if len(msgs) == s.insertPerTx || i == s.events {
			if err := publishInTx(ctx, pool, s, schema, msgs...); err != nil {
				return fmt.Errorf("prefill: %w", err)
			}
			msgs = msgs[:0]
		}
	}
	return nil
}

func drainPayload(i int) []byte {
	return []byte(`{"seq":` + strconv.Itoa(i) + `,"data":"` + strings.Repeat("x", 180) + `"}`)
}

// consumer reads the topic from its start: counts the drain's records and stamps the latency
// run's with their time of receipt.
type consumer struct {
	client    *kgo.Client
	cancel    context.CancelFunc
	done      chan struct{}
	drainSeen atomic.Int64
	drained   chan struct{}
	mu        sync.Mutex
	received  map[int]time.Time
}

func startConsumer(ctx context.Context, s settings) (*consumer, error) {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(s.brokers, ",")...),
		kgo.ConsumeTopics(s.kafkaTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(10*time.Millisecond), // franz-go's floor; a fetch returns as soon as a record is there
	)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &consumer{client: client, cancel: cancel, done: make(chan struct{}), drained: make(chan struct{}), received: map[int]time.Time{}}
	var once sync.Once
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			fetches := client.PollFetches(ctx)
			at := time.Now()
			fetches.EachRecord(func(r *kgo.Record) {
				id := ""
				for _, h := range r.Headers {
					if h.Key == kafka.UUIDHeaderKey {
						id = string(h.Value)
						break
					}
				}
				if seq, ok := strings.CutPrefix(id, "l-"); ok {
					n, _ := strconv.Atoi(seq)
					c.mu.Lock()
					c.received[n] = at
					c.mu.Unlock()
				} else if c.drainSeen.Add(1) == int64(s.events) {
					once.Do(func() { close(c.drained) })
				}
			})
		}
	}()
	return c, nil
}

func (c *consumer) receivedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.received)
}

func (c *consumer) close() {
	c.cancel()
	<-c.done
	c.client.Close()
}

// latency publishes one event per committed transaction at s.rate/s for s.seconds; it returns the
// sorted commit-to-receipt latencies in ms.
func latency(ctx context.Context, pool *pgxpool.Pool, s settings, schema wsql.DefaultPostgreSQLSchema, c *consumer) ([]float64, error) {
	total := s.rate * s.seconds
	committed := make([]time.Time, total)
	interval := time.Second / time.Duration(s.rate)
	started := time.Now()
	for i := range total {
		if wait := time.Until(started.Add(interval * time.Duration(i))); wait > 0 {
			time.Sleep(wait)
		}
		msg := message.NewMessage("l-"+strconv.Itoa(i), []byte(`{"seq":`+strconv.Itoa(i)+`}`))
		msg.Metadata = message.Metadata{keyHeader: "lat-" + strconv.Itoa(i%100), "ce_specversion": "1.0"}
		if err := publishInTx(ctx, pool, s, schema, msg); err != nil {
			return nil, fmt.Errorf("latency run: %w", err)
		}
		committed[i] = time.Now()
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.receivedCount() < total && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.received) != total {
		return nil, fmt.Errorf("latency run: %d of %d events arrived", len(c.received), total)
	}
	ms := make([]float64, 0, total)
	for i, at := range committed {
		ms = append(ms, max(c.received[i].Sub(at).Seconds()*1000, 0))
	}
	sort.Float64s(ms)
	return ms, nil
}

// createTopic makes the run's topic (8 partitions, as the relay bench's) and waits until the
// broker lists its partitions.
func createTopic(s settings) error {
	admin, err := newAdmin(s)
	if err != nil {
		return err
	}
	defer func() { _ = admin.Close() }()
	detail := &sarama.TopicDetail{NumPartitions: int32(s.partitions), ReplicationFactor: 1}
	if err := admin.CreateTopic(s.kafkaTopic, detail, false); err != nil {
		return fmt.Errorf("create topic %s: %w", s.kafkaTopic, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		meta, err := admin.DescribeTopics([]string{s.kafkaTopic})
		if err == nil && len(meta) == 1 && len(meta[0].Partitions) == s.partitions {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topic %s not ready: %v", s.kafkaTopic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deleteTopic drops the run's topic, on a connection of its own (the broker may have restarted
// since the topic was made); a failure is reported, not returned.
func deleteTopic(s settings) {
	admin, err := newAdmin(s)
	if err == nil {
		err = admin.DeleteTopic(s.kafkaTopic)
		_ = admin.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "watermill bench: could not delete topic %s: %v\n", s.kafkaTopic, err)
	}
}

func newAdmin(s settings) (sarama.ClusterAdmin, error) {
	conf := sarama.NewConfig()
	conf.Version = sarama.V4_0_0_0
	admin, err := sarama.NewClusterAdmin(strings.Split(s.brokers, ","), conf)
	if err != nil {
		return nil, fmt.Errorf("connect to Kafka: %w", err)
	}
	return admin, nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
