// The Server-Sent Events fallback against a scripted gateway: when the
// client gives up on WebSockets, what stream URLs it opens, how it maps a
// stream's events to its subscriptions, and what it does when a stream
// ends. sse-gateway.test.mjs runs it against real gateway processes.

import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../dist/index.js";
import { FakeSocket, waitFor, record, ev } from "./fake.mjs";

/** A scripted EventSource: the test plays the gateway's stream. */
class FakeEventSource {
  static all = [];

  constructor(url) {
    this.url = url;
    this.listeners = {};
    this.closed = false;
    FakeEventSource.all.push(this);
  }

  /** Resolves with stream number n (0-based) once it exists. */
  static async nth(n) {
    await waitFor(() => FakeEventSource.all.length > n, `stream ${n}`);
    return FakeEventSource.all[n];
  }

  addEventListener(type, f) {
    (this.listeners[type] ??= []).push(f);
  }

  close() {
    this.closed = true;
  }

  /** Sends an event named name with frame as its data. */
  emit(name, frame) {
    for (const f of this.listeners[name] ?? []) f({ data: JSON.stringify(frame) });
  }

  open(instance = "gw-1") {
    this.emit("welcome", { type: "welcome", connection_id: "s", instance_id: instance, user: "u1" });
  }

  subscribed(call, more = {}) {
    this.emit("subscribed", { type: "subscribed", call, epoch: "7", event_id: "0", ...more });
  }

  event(frame) {
    this.emit(frame.event, frame);
  }

  fail() {
    for (const f of this.listeners.error ?? []) f({});
  }

  /** The stream URL's query. */
  get query() {
    return new URL(this.url).searchParams;
  }
}

beforeEach(() => {
  FakeSocket.reset();
  FakeEventSource.all = [];
});

function setup(o = {}) {
  const log = { events: [], lost: [], errors: [], conn: [] };
  const client = connect({
    url: "ws://gw",
    WebSocket: FakeSocket,
    EventSource: FakeEventSource,
    reconnect: { baseMs: 1, maxMs: 4 },
    keepalive: { intervalMs: 0 },
    onConnection: (e) => log.conn.push(e),
    onError: (e) => log.errors.push(e),
    ...o,
  });
  const follow = (call, so = {}) =>
    client.subscribe(call, {
      onEvent: (e) => log.events.push(`${e.call_sid}:${e.epoch ?? "-"}:${e.event_id}`),
      onLost: (l) => log.lost.push(l),
      onError: (e) => log.errors.push(e),
      ...so,
    });
  return { client, log, follow };
}

/** refuse makes the next n sockets fail before their welcome, as when a proxy strips the upgrade. */
async function refuse(from, n) {
  for (let i = from; i < from + n; i++) {
    const ws = await FakeSocket.nth(i);
    ws.fire("error");
    ws.serverClose(1006);
  }
}

test("after sseAfter failed handshakes the client falls back to a stream, with the token in its URL", async () => {
  const { client, log, follow } = setup({ token: "tok" });
  follow("CA1", { history: true });
  await refuse(0, 3);
  const es = await FakeEventSource.nth(0);
  assert.equal(es.url, "http://gw/sse/calls?call=CA1&since=0&token=tok");
  assert.equal(FakeSocket.all.length, 3, "no socket after the fallback");
  es.open();
  es.subscribed(record(), { recovered: true });
  es.event(ev(1, "7"));
  es.event(ev(2, "7"));
  assert.deepEqual(log.events, ["CA1:7:1", "CA1:7:2"]);
  const open = log.conn.find((e) => e.type === "open");
  assert.equal(open.transport, "sse");
  assert.ok(log.conn.filter((e) => e.type === "connecting").every((e) => !e.url.includes("tok")), "no token in the connecting events");
  client.close();
  assert.ok(es.closed);
});

test("a socket that worked once is not given up for a stream", async () => {
  const { client, follow } = setup();
  follow("CA1");
  const ws = await FakeSocket.nth(0);
  ws.open();
  ws.serverClose(1006);
  await refuse(1, 2);
  await FakeSocket.nth(3); // still sockets: the welcome reset the count
  assert.equal(FakeEventSource.all.length, 0);
  client.close();
});

test("the set of calls changes: one new stream with every call, each from its position", async () => {
  const { client, log, follow } = setup({ transport: "sse" });
  follow("CA1");
  const a = await FakeEventSource.nth(0);
  assert.equal(a.url, "http://gw/sse/calls?call=CA1");
  a.open();
  a.subscribed(record(), { event_id: "4" });
  a.event(ev(5, "7"));
  follow("conv2");
  follow("CA3", { since: "9", epoch: "2" });
  const b = await FakeEventSource.nth(1);
  assert.ok(a.closed);
  assert.deepEqual(b.query.getAll("call"), ["CA1", "conv2", "CA3"]);
  assert.equal(b.query.get("since"), "7-5,,2-9");
  assert.equal(FakeEventSource.all.length, 2, "one stream for both subscribes");
  b.open();
  b.subscribed(record(), { event_id: "5", recovered: true });
  b.event(ev(5, "7")); // seen already: not delivered again
  b.subscribed(record({ call_sid: "CA2", conversation_id: "conv2" }), { event_id: "0" });
  b.subscribed(record({ call_sid: "CA3" }), { epoch: "2", event_id: "9", recovered: true });
  b.event(ev(1, "3", { call_sid: "CA2" }));
  b.event(ev(10, "2", { call_sid: "CA3" }));
  b.event(ev(6, "7"));
  assert.deepEqual(log.events, ["CA1:7:5", "CA2:3:1", "CA3:2:10", "CA1:7:6"]);
  client.unsubscribe("conv2");
  const c = await FakeEventSource.nth(2);
  assert.deepEqual(c.query.getAll("call"), ["CA1", "CA3"]);
  assert.equal(c.query.get("since"), "7-6,2-10");
  client.close();
});

test("the stream ends (close 1001, or an error): a new one at once from the positions, nothing repeated", async () => {
  const { client, log, follow } = setup({ transport: "sse" });
  follow("CA1", { history: true });
  const a = await FakeEventSource.nth(0);
  a.open();
  a.subscribed(record(), { recovered: true });
  a.event(ev(1, "7"));
  a.emit("close", { type: "close", code: 1001, reason: "server shutting down" });
  assert.ok(a.closed);
  const b = await FakeEventSource.nth(1);
  assert.equal(b.query.get("since"), "7-1");
  b.fail(); // before its welcome, as a refused stream: backoff, then another
  const c = await FakeEventSource.nth(2);
  assert.equal(c.query.get("since"), "7-1");
  c.open();
  c.subscribed(record(), { event_id: "1", recovered: true });
  c.event(ev(1, "7"));
  c.event(ev(2, "7"));
  assert.deepEqual(log.events, ["CA1:7:1", "CA1:7:2"]);
  assert.deepEqual(log.lost, []);
  assert.deepEqual(log.conn.filter((e) => e.type === "closed").map((e) => e.code), [1001, 1006]);
  client.close();
});

test("a call hidden from the token: its subscription ends, the stream goes on without it", async () => {
  const { client, log, follow } = setup({ transport: "sse" });
  follow("CA1");
  follow("CA2");
  const a = await FakeEventSource.nth(0); // one stream for both
  a.open();
  a.subscribed(record());
  a.subscribed(record({ call_sid: "CA2" }));
  a.emit("unsubscribed", { type: "unsubscribed", call_sid: "CA2", reason: "forbidden" });
  a.emit("close", { type: "close", code: 4003, reason: "a call of this stream is not visible to this token any more" });
  const b = await FakeEventSource.nth(1);
  assert.deepEqual(b.query.getAll("call"), ["CA1"]);
  const err = log.errors.find((e) => e.call === "CA2");
  assert.equal(err?.code, "forbidden");
  assert.equal(err?.terminal, true);
  client.close();
});

test("token_expiring and close 4002: a new stream with a fresh token from getToken", async () => {
  const reasons = [];
  let n = 0;
  const { client, follow } = setup({ transport: "sse", getToken: (r) => (reasons.push(r), `t${++n}`) });
  follow("CA1");
  const a = await FakeEventSource.nth(0);
  assert.equal(a.query.get("token"), "t1");
  a.open();
  a.subscribed(record(), { event_id: "3" });
  a.emit("token_expiring", { type: "token_expiring", expires_at: "2026-11-30T00:00:00Z" });
  const b = await FakeEventSource.nth(1);
  assert.equal(b.query.get("token"), "t2");
  assert.equal(b.query.get("since"), "7-3");
  b.open();
  b.emit("close", { type: "close", code: 4002, reason: "token expired" });
  const c = await FakeEventSource.nth(2);
  assert.equal(c.query.get("token"), "t3");
  assert.deepEqual(reasons, ["connect", "expiring", "expired"]);
  client.close();
});

test("topics fall back too, each on a stream of its own", async () => {
  const states = [];
  const { client } = setup({ sseAfter: 1 });
  client.topic("workflows", { onState: (s) => states.push(s.version) });
  await refuse(0, 1);
  const es = await FakeEventSource.nth(0);
  assert.equal(es.url, "http://gw/sse/workflows");
  es.open();
  es.emit("state", { type: "state", topic: "workflows", version: 2, epoch: "1", data: {} });
  es.emit("state", { type: "state", topic: "workflows", version: 1, epoch: "1", data: {} });
  assert.deepEqual(states, [2]);
  client.close();
  assert.ok(es.closed);
});

test("where there is no WebSocket but an EventSource, auto uses streams", async () => {
  const { client, follow } = setup({ WebSocket: undefined });
  const saved = globalThis.WebSocket;
  assert.equal(saved, undefined, "Node 20 has no WebSocket");
  follow("CA1");
  const es = await FakeEventSource.nth(0);
  assert.equal(es.url, "http://gw/sse/calls?call=CA1");
  client.close();
});
