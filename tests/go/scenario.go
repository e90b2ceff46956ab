// amqp091-go (github.com/rabbitmq/amqp091-go), unmodified, against ringmq's
// AMQP 0-9-1 front end (default exchange only). Built and run by
// tests/amqp_clients.rs with AMQP_PORT set; exits 0 when every step held,
// 1 with the failing step otherwise.
//
// TLS: with AMQP_TLS_CA (a CA's PEM file) it connects with amqps:// to
// localhost:AMQP_PORT and verifies the broker's certificate against that CA
// alone for the name `localhost`; with AMQP_TLS_CERT and AMQP_TLS_KEY too it
// presents that client certificate and logs in with EXTERNAL (as the
// certificate's CN), else with PLAIN as guest.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func step(s string) { fmt.Println("step: " + s) }

func check(ok bool, format string, args ...interface{}) {
	if !ok {
		fmt.Fprintf(os.Stderr, "FAILED: "+format+"\n", args...)
		os.Exit(1)
	}
}

func must(err error, what string) {
	check(err == nil, "%s: %v", what, err)
}

func next(d <-chan amqp.Delivery, what string) amqp.Delivery {
	select {
	case m, ok := <-d:
		check(ok, "%s: consumer closed", what)
		return m
	case <-time.After(5 * time.Second):
		check(false, "%s: no delivery within 5 s", what)
	}
	return amqp.Delivery{}
}

// Confirms are read from one NotifyPublish listener, in tag order.
// amqp091-go 1.5 (Debian's) registers a deferred confirmation only after the
// publish is sent, so an ack that arrives first is dropped and Wait() never
// returns (or reports a nack once its context ends): a client race, seen
// under CPU load. The listener is fed in sequence and has no such race.
var (
	confirms <-chan amqp.Confirmation
	nextTag  uint64 = 1
)

func confirmed(q string) {
	select {
	case c := <-confirms:
		check(c.DeliveryTag == nextTag, "publish to %s: confirm for tag %d, expected %d", q, c.DeliveryTag, nextTag)
		check(c.Ack, "publish to %s nacked", q)
		nextTag++
	case <-time.After(5 * time.Second):
		check(false, "publish to %s: no confirm within 5 s", q)
	}
}

func publish(ch *amqp.Channel, q string, msg amqp.Publishing) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, msg)
	must(err, "publish")
	check(dc != nil, "no deferred confirmation: channel not in confirm mode")
	confirmed(q)
}

func ready(ch *amqp.Channel, q string) int {
	s, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	must(err, "passive declare "+q)
	return s.Messages
}

// The URL, the connection's configuration and what they are: plain TCP, or
// TLS (see the top of this file) when AMQP_TLS_CA is set.
func dialConfig() (string, amqp.Config, string) {
	port := os.Getenv("AMQP_PORT")
	// Heartbeats every second, so the idle step below sees several each way.
	config := amqp.Config{Heartbeat: time.Second}
	ca := os.Getenv("AMQP_TLS_CA")
	if ca == "" {
		return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%s/", port), config, "tcp, login PLAIN"
	}
	pem, err := os.ReadFile(ca)
	must(err, "read AMQP_TLS_CA")
	roots := x509.NewCertPool()
	check(roots.AppendCertsFromPEM(pem), "no certificate in %s", ca)
	config.TLSClientConfig = &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	cert, key := os.Getenv("AMQP_TLS_CERT"), os.Getenv("AMQP_TLS_KEY")
	if cert == "" || key == "" {
		return fmt.Sprintf("amqps://guest:guest@localhost:%s/", port), config, "tls, login PLAIN"
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	must(err, "load AMQP_TLS_CERT and AMQP_TLS_KEY")
	config.TLSClientConfig.Certificates = []tls.Certificate{pair}
	config.SASL = []amqp.Authentication{&amqp.ExternalAuth{}}
	return fmt.Sprintf("amqps://localhost:%s/", port), config, "tls, login EXTERNAL"
}

func main() {
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	q, q2 := "go-work-"+suffix, "go-nack-"+suffix

	url, config, transport := dialConfig()
	conn, err := amqp.DialConfig(url, config)
	must(err, "dial")
	defer conn.Close()
	fmt.Println("transport: " + transport)
	if config.TLSClientConfig != nil {
		state := conn.ConnectionState()
		check(state.HandshakeComplete && len(state.VerifiedChains) > 0, "broker certificate not verified: %+v", state)
		fmt.Printf("tls: version %x, broker verified as %s\n", state.Version, state.PeerCertificates[0].Subject.CommonName)
	}
	ch, err := conn.Channel()
	must(err, "channel")

	step("queue declare (fresh, then again with the same flags)")
	d, err := ch.QueueDeclare(q, false, false, false, false, nil)
	must(err, "declare")
	check(d.Name == q && d.Messages == 0, "declare-ok %+v", d)
	d, err = ch.QueueDeclare(q, false, false, false, false, nil)
	must(err, "redeclare")
	check(d.Consumers == 0, "redeclare %+v", d)

	step("publish 20 with confirms (deferred confirmations and NotifyPublish)")
	must(ch.Confirm(false), "confirm.select")
	confirms = ch.NotifyPublish(make(chan amqp.Confirmation, 64))
	for i := 0; i < 20; i++ {
		publish(ch, q, amqp.Publishing{
			ContentType: "text/plain", MessageId: fmt.Sprintf("id-%d", i),
			Headers: amqp.Table{"i": int32(i)}, Body: []byte(fmt.Sprintf("m%d", i)),
		})
	}
	check(ready(ch, q) == 20, "20 ready after confirms")

	step("consume with prefetch 5: at most 5 unacked, ack each, FIFO, properties intact")
	must(ch.Qos(5, 0, false), "qos")
	msgs, err := ch.Consume(q, "go-prefetch", false, false, false, false, nil)
	must(err, "consume")
	var window []amqp.Delivery
	for i := 0; i < 20; i++ {
		m := next(msgs, "prefetch")
		check(string(m.Body) == fmt.Sprintf("m%d", i), "order: got %q at %d", m.Body, i)
		check(m.ContentType == "text/plain" && m.MessageId == fmt.Sprintf("id-%d", i), "properties %+v", m)
		check(fmt.Sprint(m.Headers["i"]) == fmt.Sprint(i), "header i = %v", m.Headers["i"])
		window = append(window, m)
		if len(window) == 5 {
			// The window is full: nothing more may arrive until an ack.
			select {
			case extra := <-msgs:
				check(false, "prefetch 5 exceeded: %q arrived with 5 unacked", extra.Body)
			case <-time.After(100 * time.Millisecond):
			}
			for _, w := range window {
				must(w.Ack(false), "ack")
			}
			window = window[:0]
		}
	}
	must(ch.Cancel("go-prefetch", false), "cancel")
	time.Sleep(100 * time.Millisecond)
	check(ready(ch, q) == 0, "queue drained")

	step("nack with requeue: redelivered with the flag, then ack")
	_, err = ch.QueueDeclare(q2, false, false, false, false, nil)
	must(err, "declare "+q2)
	publish(ch, q2, amqp.Publishing{Body: []byte("again")})
	msgs, err = ch.Consume(q2, "go-nack-consumer", false, false, false, false, nil)
	must(err, "consume")
	first := next(msgs, "first")
	check(!first.Redelivered, "first delivery flagged redelivered")
	must(first.Nack(false, true), "nack")
	second := next(msgs, "redelivery")
	check(second.Redelivered && string(second.Body) == "again", "redelivery %+v", second)
	must(second.Ack(false), "ack")
	must(ch.Cancel("go-nack-consumer", false), "cancel")

	step("basic.get: a message with its count, then empty")
	publish(ch, q2, amqp.Publishing{Body: []byte("g1")})
	publish(ch, q2, amqp.Publishing{Body: []byte("g2")})
	g, ok, err := ch.Get(q2, false)
	must(err, "get")
	check(ok && string(g.Body) == "g1" && g.MessageCount == 1, "get g1: %v %+v", ok, g)
	must(g.Ack(false), "ack get")
	g, ok, err = ch.Get(q2, true)
	must(err, "get")
	check(ok && string(g.Body) == "g2", "get g2")
	_, ok, err = ch.Get(q2, true)
	must(err, "get")
	check(!ok, "get-empty")

	step("reject with requeue, then without (dropped)")
	publish(ch, q2, amqp.Publishing{Body: []byte("r")})
	g, ok, err = ch.Get(q2, false)
	must(err, "get")
	check(ok, "get r")
	must(g.Reject(true), "reject requeue")
	g, ok, err = ch.Get(q2, false)
	must(err, "get")
	check(ok && g.Redelivered, "requeued get")
	must(g.Reject(false), "reject")
	time.Sleep(100 * time.Millisecond)
	check(ready(ch, q2) == 0, "rejected message dropped")

	step("purge and delete report message counts")
	for i := 0; i < 7; i++ {
		publish(ch, q, amqp.Publishing{Body: []byte("p")})
	}
	n, err := ch.QueuePurge(q, false)
	must(err, "purge")
	check(n == 7, "purge count %d", n)
	publish(ch, q, amqp.Publishing{Body: []byte("d")})
	n, err = ch.QueueDelete(q, false, false, false)
	must(err, "delete")
	check(n == 1, "delete count %d", n)
	_, err = ch.QueueDelete(q2, false, false, false)
	must(err, "delete "+q2)

	step("a 300 KB message, split over several body frames, comes back intact")
	big := make([]byte, 300000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	_, err = ch.QueueDeclare(q2, false, false, false, false, nil)
	must(err, "declare "+q2)
	publish(ch, q2, amqp.Publishing{Body: big})
	g, ok, err = ch.Get(q2, true)
	must(err, "get")
	check(ok && string(g.Body) == string(big), "large body changed")

	step("idle for 2.5 s with 1 s heartbeats: the connection stays up")
	time.Sleep(2500 * time.Millisecond)
	check(!conn.IsClosed() && ready(ch, q2) == 0, "after idling")
	_, err = ch.QueueDelete(q2, false, false, false)
	must(err, "delete "+q2)

	step("mandatory publish to a missing queue: basic.return 312 NO_ROUTE, and still confirmed")
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	missing := "go-nowhere-" + suffix
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = ch.PublishWithDeferredConfirmWithContext(ctx, "", missing, true, false, amqp.Publishing{Body: []byte("lost")})
	cancel()
	must(err, "mandatory publish")
	select {
	case r := <-returns:
		check(r.ReplyCode == 312 && r.RoutingKey == missing && string(r.Body) == "lost", "return %+v", r)
	case <-time.After(5 * time.Second):
		check(false, "no basic.return")
	}
	confirmed(missing)

	step("server-named exclusive queue")
	anon, err := ch.QueueDeclare("", false, true, true, false, nil)
	must(err, "server-named declare")
	check(strings.HasPrefix(anon.Name, "amq.gen-"), "server-named queue %q", anon.Name)

	step("channel error: passive declare of a missing queue closes the channel with 404")
	bad, err := conn.Channel()
	must(err, "channel")
	closed := bad.NotifyClose(make(chan *amqp.Error, 1))
	_, err = bad.QueueDeclarePassive("go-missing-"+suffix, false, false, false, false, nil)
	var aerr *amqp.Error
	check(errors.As(err, &aerr), "passive declare of a missing queue: %v", err)
	check(aerr.Code == amqp.NotFound && aerr.Server, "error %+v", aerr)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		check(false, "the failed channel was not closed")
	}

	step("the connection and its other channel still work after the channel error")
	check(!conn.IsClosed(), "connection closed by a channel error")
	_, err = ch.QueueDeclare(q, false, false, false, false, nil)
	must(err, "declare after the channel error")
	publish(ch, q, amqp.Publishing{Body: []byte("after")})
	g, ok, err = ch.Get(q, true)
	must(err, "get")
	check(ok && string(g.Body) == "after", "after the channel error")
	_, err = ch.QueueDelete(q, false, false, false)
	must(err, "delete")

	step("close")
	must(ch.Close(), "close channel")
	must(conn.Close(), "close connection")
	fmt.Println("go amqp091-go scenario: ok")
}
