// Node's amqplib, unmodified, against ringmq's AMQP 0-9-1 front end (default
// exchange only). Run by tests/amqp_clients.rs with AMQP_PORT set; exits 0
// when every step held, 1 with the failing step otherwise.
//
// TLS: with AMQP_TLS_CA (a CA's PEM file) it connects with amqps:// to
// localhost:AMQP_PORT and verifies the broker's certificate against that CA
// for the name `localhost`; with AMQP_TLS_CERT and AMQP_TLS_KEY too it
// presents that client certificate and logs in with EXTERNAL (as the
// certificate's CN), else with PLAIN as guest.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const amqp = require('amqplib');

const port = process.env.AMQP_PORT;
const tlsCa = process.env.AMQP_TLS_CA;
const tlsCert = process.env.AMQP_TLS_CERT;
const tlsKey = process.env.AMQP_TLS_KEY;
const external = Boolean(tlsCa && tlsCert && tlsKey);

// Heartbeats every second, so the idle step below sees several each way.
const url = tlsCa
  ? `amqps://${external ? '' : 'guest:guest@'}localhost:${port}/%2f?heartbeat=1`
  : `amqp://guest:guest@127.0.0.1:${port}/%2f?heartbeat=1`;
const socketOptions = {};
if (tlsCa) {
  // Only this CA is trusted (not the system's); the name checked is localhost.
  socketOptions.ca = [fs.readFileSync(tlsCa)];
  socketOptions.servername = 'localhost';
}
if (external) {
  socketOptions.cert = fs.readFileSync(tlsCert);
  socketOptions.key = fs.readFileSync(tlsKey);
  socketOptions.credentials = amqp.credentials.external();
}
const suffix = `${process.pid}-${Date.now()}`;
const Q = `node-work-${suffix}`;
const Q2 = `node-nack-${suffix}`;

function step(name) {
  console.log(`step: ${name}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Consumes `q` until `n` deliveries arrived (failing after `ms`); returns
// them with the consumer tag. `onMessage` sees each one as it arrives.
async function collect(ch, q, n, opts, ms = 5000, onMessage = () => {}) {
  const got = [];
  let cancelled = false;
  const { consumerTag } = await ch.consume(q, (m) => {
    if (m === null) {
      cancelled = true;
      return;
    }
    got.push(m);
    onMessage(m, got.length);
  }, opts);
  const deadline = Date.now() + ms;
  while (got.length < n) {
    if (cancelled) throw new Error(`consumer of ${q} cancelled by the broker`);
    if (Date.now() > deadline) throw new Error(`${got.length}/${n} deliveries from ${q} in ${ms} ms`);
    await sleep(5);
  }
  return { got, tag: consumerTag };
}

async function main() {
  const conn = await amqp.connect(url, socketOptions);
  conn.on('error', (e) => console.log(`connection error event: ${e.message}`));
  if (tlsCa) {
    // amqplib keeps the socket it opened as the connection's stream.
    const sock = conn.connection.stream;
    assert.equal(sock.encrypted, true, 'amqps:// connection not encrypted');
    assert.equal(sock.authorized, true, `broker certificate not verified: ${sock.authorizationError}`);
    console.log(`transport: tls ${sock.getProtocol()}, broker verified, login ${external ? 'EXTERNAL' : 'PLAIN'}`);
  } else {
    console.log('transport: tcp, login PLAIN');
  }

  step('queue declare (fresh, then again with the same flags)');
  const ch = await conn.createConfirmChannel();
  let ok = await ch.assertQueue(Q, { durable: false });
  assert.equal(ok.queue, Q);
  assert.equal(ok.messageCount, 0);
  ok = await ch.assertQueue(Q, { durable: false });
  assert.equal(ok.consumerCount, 0);

  step('publish 20 with confirms (per-message callbacks and waitForConfirms)');
  let acked = 0;
  for (let i = 0; i < 20; i++) {
    ch.sendToQueue(Q, Buffer.from(`m${i}`), { contentType: 'text/plain', headers: { i }, messageId: `id-${i}` },
      (err) => { assert.ifError(err); acked++; });
  }
  await ch.waitForConfirms();
  assert.equal(acked, 20);
  ok = await ch.checkQueue(Q);
  assert.equal(ok.messageCount, 20);

  step('consume with prefetch 5: only 5 unacked at a time, ack each, FIFO');
  await ch.prefetch(5);
  {
    // Ack lazily so that the prefetch limit is what holds deliveries back.
    const outstanding = [];
    let maxOutstanding = 0;
    const acker = setInterval(() => {
      while (outstanding.length) ch.ack(outstanding.shift());
    }, 50);
    const { got, tag } = await collect(ch, Q, 20, { noAck: false }, 10000, (m, i) => {
      assert.equal(m.properties.contentType, 'text/plain');
      assert.equal(m.properties.headers.i, i - 1);
      assert.equal(m.properties.messageId, `id-${i - 1}`);
      outstanding.push(m);
      maxOutstanding = Math.max(maxOutstanding, outstanding.length);
    });
    await sleep(100);
    clearInterval(acker);
    assert.ok(maxOutstanding <= 5, `prefetch 5 exceeded: ${maxOutstanding} unacked`);
    assert.equal(maxOutstanding, 5, 'prefetch never filled');
    assert.deepEqual(got.map((m) => m.content.toString()), Array.from({ length: 20 }, (_, i) => `m${i}`));
    await ch.cancel(tag);
  }
  ok = await ch.checkQueue(Q);
  assert.equal(ok.messageCount, 0);

  step('nack with requeue: redelivered with the redelivered flag, then ack');
  await ch.assertQueue(Q2);
  ch.sendToQueue(Q2, Buffer.from('again'));
  await ch.waitForConfirms();
  {
    const first = await collect(ch, Q2, 1, { noAck: false });
    assert.equal(first.got[0].fields.redelivered, false);
    await ch.cancel(first.tag);
    ch.nack(first.got[0], false, true);
    const second = await collect(ch, Q2, 1, { noAck: false });
    assert.equal(second.got[0].content.toString(), 'again');
    assert.equal(second.got[0].fields.redelivered, true);
    ch.ack(second.got[0]);
    await ch.cancel(second.tag);
  }

  step('basic.get: a message with its count, then empty');
  ch.sendToQueue(Q2, Buffer.from('g1'));
  ch.sendToQueue(Q2, Buffer.from('g2'));
  await ch.waitForConfirms();
  const g = await ch.get(Q2, { noAck: false });
  assert.ok(g, 'get returned nothing');
  assert.equal(g.content.toString(), 'g1');
  assert.equal(g.fields.messageCount, 1);
  ch.ack(g);
  const g2 = await ch.get(Q2, { noAck: true });
  assert.equal(g2.content.toString(), 'g2');
  assert.equal(await ch.get(Q2), false);

  step('nack of a get with requeue, then reject without requeue (dropped)');
  ch.sendToQueue(Q2, Buffer.from('r'));
  await ch.waitForConfirms();
  const r1 = await ch.get(Q2);
  ch.nack(r1, false, true);
  const r2 = await ch.get(Q2);
  assert.equal(r2.fields.redelivered, true);
  ch.reject(r2, false);
  await sleep(100);
  assert.equal((await ch.checkQueue(Q2)).messageCount, 0);

  step('purge and delete report message counts');
  for (let i = 0; i < 7; i++) ch.sendToQueue(Q, Buffer.from('p'));
  await ch.waitForConfirms();
  assert.equal((await ch.purgeQueue(Q)).messageCount, 7);
  ch.sendToQueue(Q, Buffer.from('d'));
  await ch.waitForConfirms();
  assert.equal((await ch.deleteQueue(Q)).messageCount, 1);
  await ch.deleteQueue(Q2);

  step('a 300 KB message, split over several body frames, comes back intact');
  {
    const big = Buffer.alloc(300000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    await ch.assertQueue(Q2);
    ch.sendToQueue(Q2, big);
    await ch.waitForConfirms();
    const m = await ch.get(Q2, { noAck: true });
    assert.ok(m && m.content.equals(big), 'large body changed');
  }

  step('idle for 2.5 s with 1 s heartbeats: the connection stays up');
  await sleep(2500);
  assert.equal((await ch.checkQueue(Q2)).messageCount, 0);

  step('mandatory publish to a missing queue: basic.return 312 NO_ROUTE, and still confirmed');
  {
    const missing = `node-nowhere-${suffix}`;
    const returned = new Promise((resolve) => ch.once('return', resolve));
    let confirmed = false;
    ch.publish('', missing, Buffer.from('lost'), { mandatory: true }, (err) => { confirmed = !err; });
    const r = await Promise.race([returned, sleep(5000).then(() => null)]);
    assert.ok(r, 'no basic.return');
    assert.equal(r.fields.replyCode, 312);
    assert.equal(r.fields.routingKey, missing);
    assert.equal(r.content.toString(), 'lost');
    await ch.waitForConfirms();
    assert.ok(confirmed, 'the returned message was not acked');
  }

  step('server-named exclusive queue');
  const anon = await ch.assertQueue('', { exclusive: true });
  assert.match(anon.queue, /^amq\.gen-/);

  step('channel error: passive declare of a missing queue closes the channel with 404');
  {
    const bad = await conn.createChannel();
    const closed = new Promise((resolve) => bad.on('close', resolve));
    bad.on('error', () => {});
    await assert.rejects(bad.checkQueue(`node-missing-${suffix}`), (e) => {
      assert.equal(e.code, 404, `code ${e.code}: ${e.message}`);
      assert.match(e.message, /NOT_FOUND/);
      return true;
    });
    await closed;
  }

  step('the connection and its other channel still work after the channel error');
  ok = await ch.assertQueue(Q, { durable: false });
  assert.equal(ok.messageCount, 0);
  ch.sendToQueue(Q, Buffer.from('after'));
  await ch.waitForConfirms();
  const after = await ch.get(Q, { noAck: true });
  assert.equal(after.content.toString(), 'after');
  await ch.deleteQueue(Q);

  await ch.deleteQueue(Q2);

  step('close');
  await ch.close();
  await conn.close();
  console.log('node amqplib scenario: ok');
}

main().catch((e) => {
  console.error(`FAILED: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
