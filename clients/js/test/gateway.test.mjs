// The client against real gateway processes on a real Redis: instances
// killed, stopped and shut down under it, tokens refused and expiring,
// histories trimmed, and every close code the gateway sends. Each test
// checks that the application saw every event of its calls once, in
// order.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { connect } from "../dist/index.js";
import { waitFor } from "./fake.mjs";
import { buildGateway, Redis, Cluster, TestSocket, Browser, token, rawEventFrame, scratchDir } from "./gateway.mjs";

let bin;
let redis;
/** Whether the gateway numbers events in epochs (it sends "epoch" in event frames). */
let epochs = false;
const NO_EPOCHS = "the gateway does not send epoch in event frames yet; this test needs the epoch protocol";

before(async () => {
  bin = await buildGateway();
  // Small stream nodes, so that a short history is trimmed soon.
  redis = await Redis.start({ args: ["--stream-node-max-entries", "10"] });
  const t = { after: (f) => after(f) };
  const c = await Cluster.start(t, { bin, redis });
  await c.register("CA-probe");
  await c.say("CA-probe", 1);
  epochs = "epoch" in (await rawEventFrame(c.gateways[0].url, "CA-probe", token()));
  await c.stop();
});

after(() => redis?.stop());

/** open connects a client to the cluster, through its list of URLs, and records what it hears. */
function open(t, c, o = {}) {
  const log = { conn: [], errors: [], reasons: [], sockets: 0 };
  class Counted extends TestSocket {
    constructor(url) {
      super(url);
      log.sockets++;
      log.last = this;
    }
  }
  const client = connect({
    url: c.urls,
    WebSocket: Counted,
    getToken: (reason) => (log.reasons.push(reason), token()),
    reconnect: { baseMs: 20, maxMs: 500 },
    keepalive: { intervalMs: 0 },
    onConnection: (e) => log.conn.push(e),
    onError: (e) => log.errors.push(e),
    ...o,
  });
  t.after(() => client.close());
  return { client, log };
}

/** follow subscribes with history and records the event ids, losses and errors. */
function follow(client, call, o = {}) {
  const f = { ids: [], keys: [], lost: [], errors: [] };
  f.sub = client.subscribe(call, {
    history: true,
    onEvent: (e) => {
      f.ids.push(Number(e.event_id));
      f.keys.push(`${e.epoch ?? "-"}:${e.event_id}`);
    },
    onLost: (l) => f.lost.push(l),
    onError: (e) => f.errors.push(e),
    ...o,
  });
  return f;
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const opens = (log, socket = "calls") => log.conn.filter((e) => e.type === "open" && e.socket === socket);
const closes = (log, code) => log.conn.filter((e) => e.type === "closed" && (code === undefined || e.code === code));
const holder = (log, socket = "calls") => opens(log, socket).at(-1)?.instanceId;
/** The instance the socket is open on now: its last open, unless a close came after it. */
const openOn = (log, socket = "calls") => {
  const e = log.conn.findLast((e) => e.socket === socket && (e.type === "open" || e.type === "closed"));
  return e?.type === "open" ? e.instanceId : undefined;
};

/** say posts turns from..to of a call and returns the last event_id published. */
async function say(c, call, from, to, text) {
  let last;
  for (let n = from; n <= to; n++) last = Number((await c.say(call, n, text)).event_id);
  return last;
}

/** A URL provider that waits while the gate is shut: the client cannot reconnect until it opens. */
function gatedUrls(c) {
  let release = () => {};
  let gate = Promise.resolve();
  return {
    url: async (attempt) => {
      await gate;
      const live = c.gateways.filter((g) => g.alive);
      return live[attempt % live.length].url;
    },
    shut() {
      gate = new Promise((r) => (release = r));
    },
    open() {
      release();
    },
  };
}

test("kill -9 of the instance holding the socket: the client resumes on another, nothing lost or repeated", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 3 });
  await c.register("CA-kill", { status: "in-progress" }); // event 1
  const { client, log } = open(t, c);
  const f = follow(client, "CA-kill");
  let last = await say(c, "CA-kill", 1, 5);
  await waitFor(() => f.ids.at(-1) === last, "the first events");
  const first = holder(log);
  const posting = (async () => (last = await say(c, "CA-kill", 6, 40)))();
  await c.byId(first).kill("SIGKILL");
  await posting;
  await waitFor(() => f.ids.at(-1) === last, "every event", 15000);
  assert.notEqual(holder(log), first, "the client moved to another instance");
  assert.ok(closes(log, 1006).length >= 1);
  assert.deepEqual(f.ids, range(1, last));
  assert.deepEqual(f.lost, []);
  assert.deepEqual(f.errors, []);
});

test("SIGTERM: close 1001, an immediate reconnect to another instance, nothing lost (async iterator)", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 2 });
  await c.register("CA-term", { status: "in-progress" });
  const { client, log } = open(t, c);
  const stream = client.events("CA-term", { history: true });
  const ids = [];
  const reading = (async () => {
    for await (const e of stream) ids.push(Number(e.event_id));
  })();
  let last = await say(c, "CA-term", 1, 5);
  await waitFor(() => ids.at(-1) === last, "the first events");
  const first = holder(log);
  const posting = (async () => (last = await say(c, "CA-term", 6, 30)))();
  await c.byId(first).kill("SIGTERM");
  await posting;
  await waitFor(() => ids.at(-1) === last, "every event", 15000);
  const [closed] = closes(log, 1001);
  assert.equal(closed.reason, "server shutting down");
  assert.equal(closed.retryInMs, 0, "1001 reconnects at once");
  assert.notEqual(holder(log), first);
  assert.deepEqual(ids, range(1, last));
  await stream.return();
  await reading;
});

test("4008: a client that stops reading is cut off, reconnects at once and misses nothing (by conversation_id)", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 2, flags: ["--send-queue", "4"] });
  await c.register("CA-slow", { conversation_id: "conv-slow", status: "in-progress" });
  const { client, log } = open(t, c);
  const f = follow(client, "conv-slow");
  let last = await say(c, "CA-slow", 1, 3);
  await waitFor(() => f.ids.at(-1) === last, "the first events");
  assert.equal(f.sub.callSid, "CA-slow");
  const gw = c.byId(holder(log));
  log.last.pauseReading();
  // Large events fill the socket's buffers, then the gateway's queue.
  const pad = "x".repeat(32 << 10);
  let n = 4;
  for (; n < 1000 && (await gw.metric("callgate_send_queue_overflows_total")) === 0; n++) last = await say(c, "CA-slow", n, n, pad);
  assert.ok(n < 1000, "the gateway cut the client off");
  log.last.resumeReading();
  await waitFor(() => closes(log, 4008).length === 1, "close 4008", 15000);
  assert.equal(closes(log, 4008)[0].retryInMs, 0, "4008 reconnects at once");
  last = await say(c, "CA-slow", n, n + 4);
  await waitFor(() => f.ids.at(-1) === last, "every event", 15000);
  assert.deepEqual(f.ids, range(1, last));
  assert.deepEqual(f.lost, []);
});

test("4029: more frames than the gateway allows: the client backs off, sends slower and resumes every call", async (t) => {
  const c = await Cluster.start(t, { bin, redis, flags: ["--max-frame-rate", "2", "--max-frame-burst", "4"] });
  const calls = range(0, 5).map((i) => `CA-rate-${i}`);
  for (const call of calls) await c.register(call, { status: "in-progress" });
  const { client, log } = open(t, c, { frameRate: 8, frameBurst: 8 });
  const fs = calls.map((call) => follow(client, call));
  await waitFor(() => fs.every((f) => f.sub.state === "active"), "every subscription", 20000);
  assert.ok(closes(log, 4029).length >= 1, "the gateway closed with 4029");
  for (const e of closes(log, 4029)) assert.ok(e.retryInMs >= 20, "4029 waits at least the base delay");
  const lasts = [];
  for (const call of calls) lasts.push(await say(c, call, 1, 2));
  await waitFor(() => fs.every((f, i) => f.ids.at(-1) === lasts[i]), "every event", 15000);
  for (const [i, f] of fs.entries()) assert.deepEqual(f.ids, range(1, lasts[i]));
});

test("4030: a user over its connection limit backs off until a connection is free", async (t) => {
  const c = await Cluster.start(t, { bin, redis, flags: ["--max-connections-per-user", "1"] });
  await c.register("CA-users", { status: "in-progress" });
  const a = open(t, c);
  follow(a.client, "CA-users");
  await waitFor(() => opens(a.log).length === 1, "the first connection");
  const b = open(t, c);
  const f = follow(b.client, "CA-users");
  await waitFor(() => closes(b.log, 4030).length >= 1, "close 4030");
  assert.ok(closes(b.log, 4030)[0].retryInMs >= 20, "4030 backs off");
  a.client.close();
  await waitFor(() => f.sub.state === "active", "the second connection", 15000);
  const last = await say(c, "CA-users", 1, 3);
  await waitFor(() => f.ids.at(-1) === last, "every event");
  assert.deepEqual(f.ids, range(1, last));
});

test("4001: a refused token is replaced through getToken and the client goes on", async (t) => {
  const c = await Cluster.start(t, { bin, redis });
  await c.register("CA-auth", { status: "in-progress" });
  const reasons = [];
  const { client, log } = open(t, c, {
    getToken: (reason) => (reasons.push(reason), reasons.length === 1 ? token({ secret: "not-the-secret" }) : token()),
  });
  const f = follow(client, "CA-auth");
  await waitFor(() => f.sub.state === "active", "the subscription");
  assert.equal(closes(log, 4001)[0].reason, "invalid token");
  assert.deepEqual(reasons, ["connect", "rejected"]);
  const last = await say(c, "CA-auth", 1, 3);
  await waitFor(() => f.ids.at(-1) === last, "every event");
  assert.deepEqual(f.ids, range(1, last));
});

test("4001 with a fixed token: a terminal error, no reconnect", async (t) => {
  const c = await Cluster.start(t, { bin, redis });
  await c.register("CA-auth-fixed");
  const { client, log } = open(t, c, { getToken: undefined, token: token({ secret: "not-the-secret" }) });
  const f = follow(client, "CA-auth-fixed");
  await waitFor(() => f.errors.length === 1, "the error");
  assert.equal(f.errors[0].code, "closed");
  assert.equal(f.errors[0].closeCode, 4001);
  assert.equal(f.errors[0].terminal, true);
  assert.equal(f.sub.state, "closed");
  assert.equal(closes(log, 4001)[0].retryInMs, undefined);
  assert.equal(log.sockets, 1);
});

test("token_expiring: a fresh auth frame keeps the connection past the old token's exp", async (t) => {
  const c = await Cluster.start(t, { bin, redis, flags: ["--token-expiry-warning", "1h"] });
  await c.register("CA-refresh", { status: "in-progress" });
  const short = token({ ttl: 2 });
  const reasons = [];
  // The fresh token outlives the warning: no warning again.
  const { client, log } = open(t, c, { getToken: (r) => (reasons.push(r), r === "connect" ? short : token({ ttl: 7200 })) });
  const f = follow(client, "CA-refresh");
  const auths = () => log.conn.filter((e) => e.type === "authenticated");
  await waitFor(() => auths().length === 2, "the refresh");
  assert.deepEqual(reasons, ["connect", "expiring"]);
  const oldExp = Date.parse(auths()[0].expiresAt);
  assert.ok(Date.parse(auths()[1].expiresAt) > oldExp);
  // The scenario is time passing: the old token's exp, when the gateway
  // would close with 4002 had the fresh token not been taken.
  await new Promise((r) => setTimeout(r, Math.max(0, oldExp - Date.now()) + 500));
  const last = await say(c, "CA-refresh", 1, 2);
  await waitFor(() => f.ids.at(-1) === last, "every event");
  assert.deepEqual(f.ids, range(1, last));
  assert.deepEqual(closes(log), []);
  assert.equal(opens(log).length, 1);
});

test("4002: a token that is not refreshed expires; getToken gives a new one and the client resumes", async (t) => {
  const c = await Cluster.start(t, { bin, redis, flags: ["--token-expiry-warning", "1h"] });
  await c.register("CA-expire", { status: "in-progress" });
  const short = token({ ttl: 2 });
  const reasons = [];
  // No fresh token on token_expiring: the same one again. The one after
  // 4002 outlives the warning.
  const { client, log } = open(t, c, { getToken: (r) => (reasons.push(r), r === "expired" ? token({ ttl: 7200 }) : short) });
  const f = follow(client, "CA-expire");
  let last = await say(c, "CA-expire", 1, 3);
  await waitFor(() => closes(log, 4002).length === 1, "close 4002", 10000);
  assert.equal(closes(log, 4002)[0].retryInMs, 0);
  last = await say(c, "CA-expire", 4, 6);
  await waitFor(() => f.ids.at(-1) === last, "every event", 10000);
  assert.ok(reasons.includes("expired"));
  assert.deepEqual(f.ids, range(1, last));
  assert.equal(opens(log).length, 2);
});

test("4003 on a topic of another org: a terminal error, no reconnect; the org's own token reads it", async (t) => {
  const c = await Cluster.start(t, { bin, redis, flags: ["--topic-orgs", "workflows=acme"] });
  await c.putTopic("workflows", { v: 1 });
  const other = open(t, c, { getToken: () => token({ org: "other" }) });
  const errors = [];
  const topic = other.client.topic("workflows", { onError: (e) => errors.push(e) });
  await waitFor(() => errors.length === 1, "the error");
  assert.equal(errors[0].closeCode, 4003);
  assert.equal(errors[0].terminal, true);
  assert.equal(topic.state, "closed");
  assert.equal(closes(other.log, 4003)[0].retryInMs, undefined);
  assert.equal(other.log.sockets, 1);

  const acme = open(t, c, { getToken: () => token({ org: "acme" }) });
  const states = [];
  acme.client.topic("workflows", { onState: (s) => states.push(s) });
  await waitFor(() => states.length === 1, "the state");
  assert.deepEqual(states[0].data, { v: 1 });
});

test("4003 on the call socket: a fresh token for another user ends the subscriptions", async (t) => {
  const c = await Cluster.start(t, { bin, redis, flags: ["--token-expiry-warning", "1h"] });
  await c.register("CA-user");
  const { client, log } = open(t, c, { getToken: (r) => token({ sub: r === "connect" ? "user-1" : "user-2" }) });
  const f = follow(client, "CA-user");
  await waitFor(() => f.errors.length === 1, "the error");
  assert.equal(f.errors[0].closeCode, 4003);
  assert.equal(f.sub.state, "closed");
  assert.equal(closes(log, 4003)[0].reason, "a fresh token must be for the same user");
  assert.equal(log.sockets, 1);
});

test("1013: a topic socket opened while Redis is down retries later, elsewhere, and gets the state", async (t) => {
  const persist = ["--appendonly", "yes", "--dir", scratchDir()];
  const own = await Redis.start({ args: persist });
  t.after(() => own.stop());
  const c = await Cluster.start(t, { bin, redis: own, n: 2 });
  await c.putTopic("routes", { r: 1 });
  await own.stop();
  // Retries a second or two apart: Redis is back before the next one.
  const { client, log } = open(t, c, { reconnect: { baseMs: 1000, maxMs: 2000 } });
  const states = [];
  client.topic("routes", { onState: (s) => states.push(s) });
  await waitFor(() => closes(log, 1013).length === 1, "close 1013", 15000);
  assert.ok(closes(log, 1013)[0].retryInMs >= 1000, "1013 retries later");
  const back = await Redis.start({ port: own.port, args: persist });
  t.after(() => back.stop());
  await waitFor(() => states.length === 1, "the state", 30000);
  assert.deepEqual(states[0].data, { r: 1 });
  // The list of URLs stands for a load balancer: the retry went to the other instance.
  assert.equal(holder(log, "routes"), "gw-1");
});

test("keepalive: an instance that stops answering (SIGSTOP) is left for another, nothing lost", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 2 });
  await c.register("CA-stop", { status: "in-progress" });
  const { client, log } = open(t, c, { keepalive: { intervalMs: 200, timeoutMs: 1000 } });
  const f = follow(client, "CA-stop");
  let last = await say(c, "CA-stop", 1, 3);
  await waitFor(() => f.ids.at(-1) === last, "the first events");
  // On a loaded machine the keepalive may already have given up on an
  // instance that was slow to answer, and the socket be on its way to the
  // other: stop the instance the socket is open on now (nothing runs
  // between this check and the signal), and look at what follows.
  await waitFor(() => openOn(log), "an open socket");
  const first = openOn(log);
  const seen = log.conn.length;
  await c.byId(first).kill("SIGSTOP");
  last = await say(c, "CA-stop", 4, 8);
  await waitFor(() => f.ids.at(-1) === last, "every event", 15000);
  const [left] = closes({ conn: log.conn.slice(seen) });
  assert.match(left.reason, /no frame within 1000 ms/);
  assert.notEqual(holder(log), first);
  assert.deepEqual(f.ids, range(1, last));
});

test("recovered:false: the history was trimmed while the client was away; onLost once, then no repeat", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 2, flags: ["--history-events", "5"] });
  await c.register("CA-trim", { status: "in-progress" });
  const gate = gatedUrls(c);
  const { client, log } = open(t, c, { url: gate.url });
  const f = follow(client, "CA-trim");
  let last = await say(c, "CA-trim", 1, 2);
  await waitFor(() => f.ids.at(-1) === last, "the first events");
  gate.shut();
  await c.byId(holder(log)).kill("SIGKILL");
  last = await say(c, "CA-trim", 3, 60);
  gate.open();
  await waitFor(() => f.lost.length === 1, "onLost");
  assert.equal(f.lost[0].reason, "history");
  assert.equal(f.lost[0].callSid, "CA-trim");
  last = await say(c, "CA-trim", 61, 63);
  await waitFor(() => f.ids.at(-1) === last, "every event", 10000);
  // 1..3, then what the history still had, then live: increasing, no repeat.
  const resumed = f.ids.slice(3);
  assert.deepEqual(f.ids.slice(0, 3), [1, 2, 3]);
  assert.ok(resumed[0] > 4, "events were lost");
  assert.deepEqual(resumed, range(resumed[0], last));
});

test("recovered:false: resuming after an event the call never had", async (t) => {
  const c = await Cluster.start(t, { bin, redis });
  await c.register("CA-far", { status: "in-progress" });
  await say(c, "CA-far", 1, 2);
  const { client } = open(t, c);
  const f = follow(client, "CA-far", { since: "1000" });
  await waitFor(() => f.lost.length === 1, "onLost");
  const last = await say(c, "CA-far", 3, 5);
  await waitFor(() => f.ids.at(-1) === last, "the new events");
  assert.deepEqual(f.ids, [4, 5, 6]);
});

test("an unknown call: call_not_found, not retried; the socket goes on serving other calls", async (t) => {
  const c = await Cluster.start(t, { bin, redis });
  await c.register("CA-known", { status: "in-progress" });
  const { client, log } = open(t, c);
  const f = follow(client, "CA-nope");
  const stream = client.events("CA-nope-2");
  await assert.rejects(stream.next(), (e) => e.code === "call_not_found" && e.terminal);
  await waitFor(() => f.errors.length === 1, "the error");
  assert.equal(f.errors[0].code, "call_not_found");
  assert.equal(f.sub.state, "closed");
  const known = follow(client, "CA-known");
  const last = await say(c, "CA-known", 1, 2);
  await waitFor(() => known.ids.at(-1) === last, "the known call's events");
  assert.equal(log.sockets, 1);
  assert.deepEqual(closes(log), []);
});

test("a topic resumes after kill -9 and its versions never go back", async (t) => {
  const c = await Cluster.start(t, { bin, redis, n: 2 });
  for (let v = 1; v <= 3; v++) await c.putTopic("workflow-history", { v });
  const { client, log } = open(t, c);
  const versions = [];
  const topic = client.topic("workflow-history", { onState: (s) => versions.push(s.version) });
  await waitFor(() => topic.version === 3, "version 3");
  await c.byId(holder(log, "workflow-history")).kill("SIGKILL");
  for (let v = 4; v <= 6; v++) await c.putTopic("workflow-history", { v });
  await waitFor(() => topic.version === 6, "version 6", 15000);
  assert.deepEqual(topic.data, { v: 6 });
  for (let i = 1; i < versions.length; i++) assert.ok(versions[i] > versions[i - 1], `versions go up: ${versions}`);
});

// The epoch protocol: these run once the gateway sends epoch.

test("reset: Redis loses a call while the client follows it; onLost, then the new epoch from event 1", async (t) => {
  if (!epochs) return t.skip(NO_EPOCHS);
  const own = await Redis.start();
  t.after(() => own.stop());
  const c = await Cluster.start(t, { bin, redis: own, flags: ["--call-cache-ttl", "0"] });
  await c.register("CA-reset", { status: "in-progress" });
  const { client } = open(t, c);
  const f = follow(client, "CA-reset");
  let last = await say(c, "CA-reset", 1, 3);
  await waitFor(() => f.ids.at(-1) === last, "the first events");
  const before = f.keys.slice();
  await own.command("FLUSHALL");
  await c.register("CA-reset", { status: "in-progress" }); // event 1 of the new epoch
  last = await say(c, "CA-reset", 4, 6);
  await waitFor(() => f.ids.at(-1) === last && f.keys.length > before.length, "the new epoch's events", 10000);
  assert.equal(f.lost.length, 1);
  assert.equal(f.lost[0].reason, "reset");
  const after = f.keys.slice(before.length);
  const epoch = after[0].split(":")[0];
  assert.notEqual(epoch, before[0].split(":")[0]);
  assert.deepEqual(after, range(1, last).map((id) => `${epoch}:${id}`));
});

test("resume from an older epoch: the new epoch's events are delivered, with recovered:false", async (t) => {
  if (!epochs) return t.skip(NO_EPOCHS);
  const own = await Redis.start();
  t.after(() => own.stop());
  const c = await Cluster.start(t, { bin, redis: own, n: 2, flags: ["--call-cache-ttl", "0"] });
  await c.register("CA-epoch", { status: "in-progress" });
  const gate = gatedUrls(c);
  const { client, log } = open(t, c, { url: gate.url });
  const f = follow(client, "CA-epoch");
  let last = await say(c, "CA-epoch", 1, 3);
  await waitFor(() => f.ids.at(-1) === last, "the first events");
  const before = f.keys.slice();
  gate.shut();
  await c.byId(holder(log)).kill("SIGKILL");
  await own.command("FLUSHALL");
  await c.register("CA-epoch", { status: "in-progress" });
  last = await say(c, "CA-epoch", 4, 6);
  gate.open();
  await waitFor(() => f.ids.at(-1) === last && f.keys.length > before.length, "the new epoch's events", 10000);
  assert.equal(f.lost.length, 1);
  const after = f.keys.slice(before.length);
  const epoch = after[0].split(":")[0];
  assert.deepEqual(after, range(1, last).map((id) => `${epoch}:${id}`));
  assert.deepEqual(f.sub.position, { eventId: String(last), epoch });
});

test("a live subscription resumes from the event_id its subscribed frame gave", async (t) => {
  if (!epochs) return t.skip(NO_EPOCHS);
  const c = await Cluster.start(t, { bin, redis, n: 2 });
  await c.register("CA-live", { status: "in-progress" });
  let last = await say(c, "CA-live", 1, 3);
  const gate = gatedUrls(c);
  const { client, log } = open(t, c, { url: gate.url });
  const f = follow(client, "CA-live", { history: false });
  await waitFor(() => f.sub.state === "active", "the subscription");
  assert.equal(f.sub.position.eventId, String(last));
  const from = last + 1;
  gate.shut();
  await c.byId(holder(log)).kill("SIGKILL");
  last = await say(c, "CA-live", 4, 6);
  gate.open();
  await waitFor(() => f.ids.at(-1) === last, "the events after the subscribe", 10000);
  assert.deepEqual(f.ids, range(from, last));
  assert.deepEqual(f.lost, []);
});

// The browser: the dashboard of the README, as it is written there.

test("the README's dashboard in Chromium: the transcript speaker by speaker, tentative text replaced, the status", async (t) => {
  const browser = await Browser.launch();
  if (!browser) return t.skip("no chromium on PATH");
  t.after(() => browser.close());
  const c = await Cluster.start(t, { bin, redis });
  await c.register("CA-page", { status: "in-progress" });
  await c.say("CA-page", 1, "Hi, this is Ava. Am I speaking with Maria?");
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
  const page = readme.match(/## A dashboard in 20 lines[\s\S]*?```html\n([\s\S]*?)```/)[1].replace("wss://gateway.example.com", c.gateways[0].url);
  const files = {
    "/": ["text/html", page],
    "/callgate.js": ["text/javascript", await readFile(new URL("../dist/index.js", import.meta.url), "utf8")],
    "/dashboard/token": ["text/plain", token()],
  };
  const server = createServer((req, res) => {
    const [type, body] = files[new URL(req.url, "http://x").pathname] ?? ["text/plain", null];
    res.writeHead(body === null ? 404 : 200, { "Content-Type": type }).end(body ?? "not found");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  await browser.send("Page.navigate", { url: `http://127.0.0.1:${server.address().port}/?call=CA-page` });
  const text = () => browser.eval(`document.querySelector("#status")?.textContent + "|" + [...document.querySelectorAll("li")].map((li) => li.textContent).join("|")`);
  await waitFor(async () => (await text()).includes("Maria"), "the history", 15000);
  await c.live("CA-page", { type: "tentative_user_transcript", tentative_user_transcription_event: { user_transcript: "Yes, spea", event_id: 2 } });
  await waitFor(async () => (await text()).includes("Yes, spea"), "the tentative line");
  await c.live("CA-page", { type: "user_transcript", user_transcription_event: { user_transcript: "Yes, speaking.", event_id: 2 } });
  await c.register("CA-page", { status: "done" });
  await waitFor(async () => (await text()).startsWith("CA-page: done"), "the status", 10000);
  assert.equal(await text(), "CA-page: done|Agent: Hi, this is Ava. Am I speaking with Maria?|Caller: Yes, speaking.");
});
