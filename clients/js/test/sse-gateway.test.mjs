// The Server-Sent Events fallback against real gateway processes on a
// real Redis, with the eventsource package as Node's EventSource: a
// stream whose instance is killed, WebSockets that never get through,
// and calls added and dropped while events flow. Each test checks that
// the application saw every event of its calls once, in order.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { EventSource } from "eventsource";
import { connect } from "../dist/index.js";
import { waitFor } from "./fake.mjs";
import { buildGateway, Redis, Cluster, token } from "./gateway.mjs";

let bin;
let redis;

before(async () => {
  bin = await buildGateway();
  redis = await Redis.start();
});

after(() => redis?.stop());

/** A WebSocket that never gets through, as behind a proxy that strips upgrades. */
class Blocked {
  constructor() {
    this.listeners = {};
    setTimeout(() => {
      for (const f of this.listeners.error ?? []) f();
      for (const f of this.listeners.close ?? []) f({ code: 1006, reason: "" });
    }, 1);
  }
  addEventListener(type, f) {
    (this.listeners[type] ??= []).push(f);
  }
  send() {}
  close() {}
}

function open(t, c, o = {}) {
  const log = { conn: [], errors: [] };
  const client = connect({
    url: c.urls,
    EventSource,
    getToken: () => token(),
    reconnect: { baseMs: 20, maxMs: 500 },
    keepalive: { intervalMs: 0 },
    onConnection: (e) => log.conn.push(e),
    onError: (e) => log.errors.push(e),
    ...o,
  });
  t.after(() => client.close());
  return { client, log };
}

function follow(client, call, o = {}) {
  const f = { ids: [], lost: [], errors: [] };
  f.sub = client.subscribe(call, {
    history: true,
    onEvent: (e) => f.ids.push(Number(e.event_id)),
    onLost: (l) => f.lost.push(l),
    onError: (e) => f.errors.push(e),
    ...o,
  });
  return f;
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const opens = (log) => log.conn.filter((e) => e.type === "open");

async function say(c, call, from, to) {
  let last;
  for (let n = from; n <= to; n++) last = Number((await c.say(call, n)).event_id);
  return last;
}

test("SSE: kill -9 of the instance serving the stream; the client resumes on another, nothing lost or repeated", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 3 });
  await c.register("CA-sse-kill", { status: "in-progress" }); // event 1
  const { client, log } = open(t, c, { transport: "sse" });
  const f = follow(client, "CA-sse-kill");
  let last = await say(c, "CA-sse-kill", 1, 5);
  await waitFor(() => f.ids.at(-1) === last, "the first events");
  const first = opens(log).at(-1);
  assert.equal(first.transport, "sse");
  const posting = (async () => (last = await say(c, "CA-sse-kill", 6, 40)))();
  await c.byId(first.instanceId).kill("SIGKILL");
  await posting;
  await waitFor(() => f.ids.at(-1) === last, "every event", 15000);
  assert.notEqual(opens(log).at(-1).instanceId, first.instanceId, "the stream moved to another instance");
  assert.deepEqual(f.ids, range(1, last));
  assert.deepEqual(f.lost, []);
  assert.deepEqual(f.errors, []);
});

test("auto: WebSockets that never get through; the client falls back to SSE for calls and topics", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 1 });
  await c.register("CA-sse-auto", { status: "in-progress" });
  await c.putTopic("workflows", { n: 1 });
  const { client, log } = open(t, c, { WebSocket: Blocked, sseAfter: 2 });
  const f = follow(client, "CA-sse-auto");
  const states = [];
  client.topic("workflows", { onState: (s) => states.push(s.data.n) });
  const last = await say(c, "CA-sse-auto", 1, 3);
  await waitFor(() => f.ids.at(-1) === last && states.length === 1, "events and the state over SSE");
  await c.putTopic("workflows", { n: 2 });
  await waitFor(() => states.at(-1) === 2, "the new state");
  assert.deepEqual(f.ids, range(1, last));
  assert.ok(opens(log).length >= 2 && opens(log).every((e) => e.transport === "sse"));
  assert.ok(log.conn.some((e) => e.type === "connecting" && e.transport === "websocket"), "WebSockets were tried first");
});

test("SSE: calls added and dropped while events flow; each stream resumes every call from its position", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 2 });
  for (const call of ["CA-m1", "CA-m2", "CA-m3"]) await c.register(call, { status: "in-progress" });
  const { client } = open(t, c, { transport: "sse" });
  const f1 = follow(client, "CA-m1");
  let l1 = await say(c, "CA-m1", 1, 3);
  await waitFor(() => f1.ids.at(-1) === l1, "CA-m1's first events");
  const f2 = follow(client, "CA-m2");
  const posting = (async () => (l1 = await say(c, "CA-m1", 4, 20)))();
  let l2 = await say(c, "CA-m2", 1, 5);
  const f3 = follow(client, "CA-m3");
  await say(c, "CA-m3", 1, 2);
  f2.sub.unsubscribe();
  await posting;
  await waitFor(() => f1.ids.at(-1) === l1 && f3.ids.length === 3, "every event of CA-m1 and CA-m3", 15000);
  assert.deepEqual(f1.ids, range(1, l1));
  assert.deepEqual(f3.ids, range(1, 3));
  assert.deepEqual(f2.ids, range(1, f2.ids.length), "CA-m2 in order until it was dropped");
  assert.ok(f2.ids.length <= l2);
  for (const f of [f1, f2, f3]) assert.deepEqual(f.errors, []);
});
