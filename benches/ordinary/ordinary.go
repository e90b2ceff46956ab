// An ordinary AMQP client, as most applications use one: amqp091-go,
// unmodified, one publish per call (method, header and body written and
// flushed together, nothing batched), one producer connection and one
// consumer connection, prefetch 1000, an ack with `multiple` every 100
// deliveries. The workload of issue 22, run by benches/report.sh against
// RabbitMQ and ringmq's AMQP front end alike.
//
//	ordinary run  -url URL [-size 16] [-rate 0] [-duration 8] [-warmup 2] [-json F] [-hgrm F]
//	ordinary fill -url URL -count N [-size 1024]    persistent, confirmed, into a durable queue
//	ordinary wait -url URL -count N [-timeout 300] [-delete]
//	                                                until that queue holds N messages again
//	                                                (then deletes it, with -delete)
//	ordinary floor -addr HOST:PORT [-size 16] [-rate 0] [-writes 3] ...
//	                                                the same traffic, byte for byte, to the
//	                                                bare relay ringmq-floor (the physical floor)
//
// `run` publishes as fast as one client can (-rate 0) or at a fixed rate,
// open loop, and measures each message's latency from its actual send
// (the client's own timer overshoot left out) and from its intended send
// time.
//
// `floor` sends what `run` sends, without a broker: to ringmq-floor
// (floor/ in the workspace), which forwards the publisher's bytes to the consumer
// and reads its acks. Each message is the bytes of the AMQP publish
// amqp091-go writes (method, header and body frames, the queue name as
// routing key), in as many writes: amqp091-go 1.5 flushes each frame with
// its own write (-writes 3); -writes 1 sends the three frames in one. The
// consumer reads deliveries of the same size through a bufio.Reader (as
// amqp091-go reads) and writes a basic.ack frame with `multiple` every
// -ack-every. Built in GOPATH mode against Debian's amqp091-go:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o ordinary benches/ordinary/ordinary.go
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "ordinary: "+format+"\n", args...)
	os.Exit(1)
}

func must(err error, what string) {
	if err != nil {
		die("%s: %v", what, err)
	}
}

func main() {
	if len(os.Args) < 2 {
		die("usage: ordinary run|fill|wait -url URL ...")
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	url := fs.String("url", "amqp://guest:guest@127.0.0.1:5672/", "broker")
	queue := fs.String("queue", "", "queue (default ordinary-run, or ordinary-durable for fill/wait)")
	size := fs.Int("size", 16, "body bytes, at least 16")
	rate := fs.Float64("rate", 0, "messages a second, open loop; 0 = as fast as the client can")
	duration := fs.Float64("duration", 8, "measured seconds")
	warmup := fs.Float64("warmup", 2, "seconds sent before the measured window")
	prefetch := fs.Int("prefetch", 1000, "consumer prefetch")
	ackEvery := fs.Int("ack-every", 100, "ack with multiple every N deliveries")
	count := fs.Int("count", 100000, "fill/wait: messages")
	timeout := fs.Float64("timeout", 300, "wait: give up after this many seconds")
	jsonOut := fs.String("json", "", "run: write the summary here")
	hgrmOut := fs.String("hgrm", "", "run: write the latency from the actual send as an .hgrm table")
	label := fs.String("label", "ordinary", "run: label in the summary")
	del := fs.Bool("delete", false, "wait: delete the queue once it holds its messages")
	addr := fs.String("addr", "127.0.0.1:5673", "floor: ringmq-floor's address")
	writes := fs.Int("writes", 3, "floor: writes per message, 3 (a frame each, as amqp091-go 1.5) or 1")
	must(fs.Parse(os.Args[2:]), "flags")
	if *size < 16 {
		die("-size must be at least 16")
	}
	switch mode {
	case "run":
		q := *queue
		if q == "" {
			q = "ordinary-run"
		}
		run(*url, q, *size, *rate, *duration, *warmup, *prefetch, *ackEvery, *jsonOut, *hgrmOut, *label)
	case "floor":
		q := *queue
		if q == "" {
			q = "ordinary-run"
		}
		if *writes != 1 && *writes != 3 {
			die("-writes must be 1 or 3")
		}
		floor(*addr, q, *size, *rate, *duration, *warmup, *ackEvery, *writes, *jsonOut, *hgrmOut, *label)
	case "fill":
		q := *queue
		if q == "" {
			q = "ordinary-durable"
		}
		fill(*url, q, *count, *size)
	case "wait":
		q := *queue
		if q == "" {
			q = "ordinary-durable"
		}
		wait(*url, q, *count, *timeout, *del)
	default:
		die("unknown mode %q", mode)
	}
}

type percentiles struct {
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Count int     `json:"count"`
}

// pct takes sorted latencies in ns and returns µs percentiles.
func pct(v []int64) percentiles {
	if len(v) == 0 {
		return percentiles{}
	}
	at := func(q float64) float64 {
		i := int(q*float64(len(v))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(v) {
			i = len(v) - 1
		}
		return float64(v[i]) / 1e3
	}
	return percentiles{at(0.5), at(0.9), at(0.99), at(0.999), float64(v[len(v)-1]) / 1e3, len(v)}
}

func run(url, q string, size int, rate, duration, warmup float64, prefetch, ackEvery int, jsonOut, hgrmOut, label string) {
	pconn, err := amqp.Dial(url)
	must(err, "producer connection")
	defer pconn.Close()
	cconn, err := amqp.Dial(url)
	must(err, "consumer connection")
	defer cconn.Close()
	pch, err := pconn.Channel()
	must(err, "producer channel")
	cch, err := cconn.Channel()
	must(err, "consumer channel")
	_, err = cch.QueueDeclare(q, false, false, false, false, nil)
	must(err, "queue.declare")
	_, err = cch.QueuePurge(q, false)
	must(err, "queue.purge")
	must(cch.Qos(prefetch, 0, false), "basic.qos")
	deliveries, err := cch.Consume(q, "", false, false, false, false, nil)
	must(err, "basic.consume")

	start := time.Now()
	winStart := time.Duration(warmup * 1e9)
	winEnd := winStart + time.Duration(duration*1e9)
	var sent int64
	var done int32

	// The consumer: latency of every message sent inside the window, from
	// its actual send and from its intended send time.
	var lat, latIntended []int64
	var received, inWindow int64
	cdone := make(chan struct{})
	go func() {
		defer close(cdone)
		n := 0
		idle := time.NewTimer(time.Hour)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case d, ok := <-deliveries:
				if !ok {
					return
				}
				now := int64(time.Since(start))
				actual := int64(binary.LittleEndian.Uint64(d.Body[0:8]))
				intended := int64(binary.LittleEndian.Uint64(d.Body[8:16]))
				received++
				if intended >= int64(winStart) && intended < int64(winEnd) {
					lat = append(lat, now-actual)
					latIntended = append(latIntended, now-intended)
				}
				if now >= int64(winStart) && now < int64(winEnd) {
					inWindow++
				}
				n++
				if n >= ackEvery {
					must(d.Ack(true), "basic.ack")
					n = 0
				}
				if atomic.LoadInt32(&done) == 1 && received >= atomic.LoadInt64(&sent) {
					if n > 0 {
						_ = d.Ack(true)
					}
					return
				}
				idle.Reset(3 * time.Second)
			case <-tick.C:
				if atomic.LoadInt32(&done) == 1 && received >= atomic.LoadInt64(&sent) {
					return
				}
			case <-idle.C:
				return
			}
		}
	}()

	body := make([]byte, size)
	ctx := context.Background()
	var i int64
	for {
		intended, ok := nextDue(i, rate, start, winEnd)
		if !ok {
			break
		}
		stamp(body, start, intended)
		must(pch.PublishWithContext(ctx, "", q, false, false, amqp.Publishing{Body: body}), "basic.publish")
		i++
		atomic.StoreInt64(&sent, i)
	}
	atomic.StoreInt32(&done, 1)
	select {
	case <-cdone:
	case <-time.After(5 * time.Second):
	}
	summary := map[string]interface{}{
		"label":      label,
		"size":       size,
		"rate":       rate,
		"sent":       i,
		"received":   received,
		"lost":       i - received,
		"msgs_per_s": float64(inWindow) / duration,
	}
	report(summary, lat, latIntended, jsonOut, hgrmOut)
}

// hgrm writes sorted ns latencies as HdrHistogram's percentile table in µs
// (the rows ringmq-loadgen's `plot` reads), at percentiles spaced as
// HdrHistogram's: five per halving of the tail.
func hgrm(v []int64) string {
	s := fmt.Sprintf("%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")
	if len(v) == 0 {
		return s
	}
	n := float64(len(v))
	q := 0.0
	for step := 0; ; step++ {
		i := int(q * n)
		if i >= len(v) {
			break
		}
		s += fmt.Sprintf("%12.3f %2.12f %10d %14.2f\n", float64(v[i])/1e3, q, i+1, 1/(1-q))
		// 5 points per halving of what is left above q.
		q = 1 - (1-q)*0.8706
		if q > 1-1/n {
			break
		}
	}
	s += fmt.Sprintf("%12.3f %2.12f %10d\n", float64(v[len(v)-1])/1e3, 1.0, len(v))
	return s
}

func fill(url, q string, count, size int) {
	conn, err := amqp.Dial(url)
	must(err, "connection")
	defer conn.Close()
	ch, err := conn.Channel()
	must(err, "channel")
	_, err = ch.QueueDeclare(q, true, false, false, false, nil)
	must(err, "queue.declare")
	_, err = ch.QueuePurge(q, false)
	must(err, "queue.purge")
	must(ch.Confirm(false), "confirm.select")
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 4096))
	// At most `window` unconfirmed publishes, counted by a semaphore the
	// confirm reader releases.
	const window = 2000
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	var nacked int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for got := 0; got < count; got++ {
			c, ok := <-confirms
			if !ok {
				die("channel closed after %d confirms", got)
			}
			if !c.Ack {
				nacked++
			}
			<-sem
		}
	}()
	body := make([]byte, size)
	t0 := time.Now()
	for i := 0; i < count; i++ {
		sem <- struct{}{}
		binary.LittleEndian.PutUint64(body, uint64(i))
		must(ch.PublishWithContext(context.Background(), "", q, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}), "basic.publish")
	}
	wg.Wait()
	if nacked > 0 {
		die("%d publishes nacked", nacked)
	}
	fmt.Printf("filled %d x %d B in %.1f s\n", count, size, time.Since(t0).Seconds())
}

func wait(url, q string, count int, timeout float64, del bool) {
	deadline := time.Now().Add(time.Duration(timeout * 1e9))
	last := -1
	for time.Now().Before(deadline) {
		if conn, err := amqp.Dial(url); err == nil {
			if ch, err := conn.Channel(); err == nil {
				if st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err == nil {
					last = st.Messages
					if st.Messages >= count {
						fmt.Printf("%s holds %d messages\n", q, st.Messages)
						if del {
							_, err := ch.QueueDelete(q, false, false, false)
							must(err, "queue.delete")
						}
						conn.Close()
						return
					}
				}
			}
			conn.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	die("%s held %d messages, not %d, after %.0f s", q, last, count, timeout)
}

// publishFrames is what amqp091-go writes for a basic.publish of a body
// of `size` bytes to the default exchange with routing key q and no
// properties: the method, content header and body frames, and the offset
// of the body in them.
func publishFrames(q string, size int) (method, header, body []byte) {
	frame := func(typ byte, payload []byte) []byte {
		f := make([]byte, 0, 8+len(payload))
		f = append(f, typ, 0, 1)
		f = binary.BigEndian.AppendUint32(f, uint32(len(payload)))
		f = append(f, payload...)
		return append(f, 0xCE)
	}
	var m []byte
	m = binary.BigEndian.AppendUint16(m, 60) // basic
	m = binary.BigEndian.AppendUint16(m, 40) // publish
	m = binary.BigEndian.AppendUint16(m, 0)  // reserved
	m = append(m, 0)                         // exchange ""
	m = append(m, byte(len(q)))
	m = append(m, q...)
	m = append(m, 0) // mandatory, immediate
	var h []byte
	h = binary.BigEndian.AppendUint16(h, 60)
	h = binary.BigEndian.AppendUint16(h, 0)
	h = binary.BigEndian.AppendUint64(h, uint64(size))
	h = binary.BigEndian.AppendUint16(h, 0) // no properties
	return frame(1, m), frame(2, h), frame(3, make([]byte, size))
}

// ackFrame is a basic.ack of tag, with `multiple`.
func ackFrame(tag uint64) []byte {
	f := []byte{1, 0, 1, 0, 0, 0, 13, 0, 60, 0, 80}
	f = binary.BigEndian.AppendUint64(f, tag)
	return append(f, 1, 0xCE)
}

// floor runs `run`'s traffic against ringmq-floor: the same bytes per
// message, the same writes, the same acks, and the same measurements.
func floor(addr, q string, size int, rate, duration, warmup float64, ackEvery, writes int, jsonOut, hgrmOut, label string) {
	dial := func(role byte) *net.TCPConn {
		c, err := net.Dial("tcp", addr)
		must(err, "connecting to ringmq-floor")
		tc := c.(*net.TCPConn)
		must(tc.SetNoDelay(true), "TCP_NODELAY")
		_, err = tc.Write([]byte{role})
		must(err, "role")
		return tc
	}
	pconn := dial('P')
	defer pconn.Close()
	cconn := dial('C')
	defer cconn.Close()
	method, header, bodyFrame := publishFrames(q, size)
	bodyAt := 7 // the body's offset in its frame
	msgLen := len(method) + len(header) + len(bodyFrame)
	whole := make([]byte, 0, msgLen)

	start := time.Now()
	winStart := time.Duration(warmup * 1e9)
	winEnd := winStart + time.Duration(duration*1e9)
	var sent int64
	var done int32
	var lat, latIntended []int64
	var received, inWindow int64
	cdone := make(chan struct{})
	go func() {
		defer close(cdone)
		r := bufio.NewReader(cconn)
		rec := make([]byte, msgLen)
		var tag uint64
		n := 0
		for {
			if r.Buffered() < msgLen {
				// Idle for 3 s: the run is over (or the relay is gone).
				must(cconn.SetReadDeadline(time.Now().Add(3*time.Second)), "deadline")
			}
			if _, err := io.ReadFull(r, rec); err != nil {
				return // the idle timeout, or the relay closed
			}
			now := int64(time.Since(start))
			b := rec[len(method)+len(header)+bodyAt:]
			actual := int64(binary.LittleEndian.Uint64(b[0:8]))
			intended := int64(binary.LittleEndian.Uint64(b[8:16]))
			received++
			tag++
			if intended >= int64(winStart) && intended < int64(winEnd) {
				lat = append(lat, now-actual)
				latIntended = append(latIntended, now-intended)
			}
			if now >= int64(winStart) && now < int64(winEnd) {
				inWindow++
			}
			n++
			if n >= ackEvery {
				_, err := cconn.Write(ackFrame(tag))
				must(err, "ack")
				n = 0
			}
			if atomic.LoadInt32(&done) == 1 && received >= atomic.LoadInt64(&sent) {
				return
			}
		}
	}()

	body := bodyFrame[bodyAt : bodyAt+size]
	var i int64
	for {
		intended, ok := nextDue(i, rate, start, winEnd)
		if !ok {
			break
		}
		stamp(body, start, intended)
		if writes == 3 {
			for _, f := range [][]byte{method, header, bodyFrame} {
				_, err := pconn.Write(f)
				must(err, "publish")
			}
		} else {
			whole = append(append(append(whole[:0], method...), header...), bodyFrame...)
			_, err := pconn.Write(whole)
			must(err, "publish")
		}
		i++
		atomic.StoreInt64(&sent, i)
	}
	atomic.StoreInt32(&done, 1)
	select {
	case <-cdone:
	case <-time.After(5 * time.Second):
	}
	summary := map[string]interface{}{
		"label":          label,
		"size":           size,
		"rate":           rate,
		"sent":           i,
		"received":       received,
		"lost":           i - received,
		"msgs_per_s":     float64(inWindow) / duration,
		"writes_per_msg": writes,
		"bytes_per_msg":  msgLen,
	}
	report(summary, lat, latIntended, jsonOut, hgrmOut)
}

// nextDue returns message i's intended send time, sleeping until then at a
// fixed rate (at full speed it is now); false once the window has ended.
func nextDue(i int64, rate float64, start time.Time, winEnd time.Duration) (time.Duration, bool) {
	if rate <= 0 {
		now := time.Since(start)
		return now, now < winEnd
	}
	intended := time.Duration(float64(i) / rate * 1e9)
	if intended >= winEnd {
		return 0, false
	}
	if wait := intended - time.Since(start); wait > 0 {
		time.Sleep(wait)
	}
	return intended, true
}

// stamp writes the actual and the intended send time into the body's
// first 16 bytes, for the consumer's two latencies.
func stamp(body []byte, start time.Time, intended time.Duration) {
	binary.LittleEndian.PutUint64(body[0:8], uint64(time.Since(start)))
	binary.LittleEndian.PutUint64(body[8:16], uint64(intended))
}

// report adds the two latencies (from the actual and from the intended
// send, ns each, sorted here) to a run's summary, prints it, and writes the
// -json and -hgrm files asked for.
func report(summary map[string]interface{}, lat, latIntended []int64, jsonOut, hgrmOut string) {
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	sort.Slice(latIntended, func(a, b int) bool { return latIntended[a] < latIntended[b] })
	summary["latency_us"] = pct(lat)
	summary["latency_from_intended_us"] = pct(latIntended)
	text, _ := json.MarshalIndent(summary, "", "  ")
	fmt.Println(string(text))
	if jsonOut != "" {
		must(os.WriteFile(jsonOut, append(text, '\n'), 0o644), "writing -json")
	}
	if hgrmOut != "" {
		must(os.WriteFile(hgrmOut, []byte(hgrm(lat)), 0o644), "writing -hgrm")
	}
}
