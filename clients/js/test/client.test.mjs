// The client against a scripted gateway: what it sends, what it delivers,
// and what it does after each close code. gateway.test.mjs runs it against
// real gateway processes.

import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { connect, CallgateError } from "../dist/index.js";
import { FakeSocket, waitFor, record, ev } from "./fake.mjs";

beforeEach(() => FakeSocket.reset());

/** A client on FakeSocket with short timers; events and errors are recorded. */
function setup(o = {}) {
  const log = { events: [], lost: [], errors: [], conn: [], statuses: [] };
  const client = connect({
    url: "ws://gw",
    WebSocket: FakeSocket,
    reconnect: { baseMs: 1, maxMs: 4 },
    keepalive: { intervalMs: 0 },
    onConnection: (e) => log.conn.push(e),
    onError: (e) => log.errors.push(e),
    ...o,
  });
  const follow = (call = "CA1", so = {}) =>
    client.subscribe(call, {
      onEvent: (e) => log.events.push(`${e.epoch ?? "-"}:${e.event_id}`),
      onLost: (l) => log.lost.push(l),
      onError: (e) => log.errors.push(e),
      onStatus: (s) => log.statuses.push(s),
      ...so,
    });
  return { client, log, follow };
}

const closes = (log) => log.conn.filter((e) => e.type === "closed");

/** followed is setup, following CA1 with history on the first socket, which confirmed it. */
async function followed(o = {}) {
  const s = setup(o);
  s.sub = s.follow("CA1", { history: true });
  s.ws = await FakeSocket.nth(0);
  s.ws.open();
  s.ws.push({ type: "subscribed", id: s.ws.subscribeOf("CA1").id, call: record(), recovered: true });
  return s;
}

test("the token goes in the first frame, never in the URL", async () => {
  const { client, follow } = setup({ token: "tok" });
  follow("CA1", { history: true });
  const ws = await FakeSocket.nth(0);
  ws.open();
  assert.equal(ws.url, "ws://gw/ws/calls/transcriptions");
  assert.deepEqual(ws.sent[0], { type: "auth", token: "tok" });
  assert.deepEqual(ws.sent[1], { type: "subscribe", call: "CA1", since: "0", id: ws.sent[1].id });
  client.close();
  assert.equal(ws.closedWith, 1000);
});

test("each event is delivered once, in order", async () => {
  const { client, log, ws } = await followed();
  ws.push(ev(1, "E1"), ev(2, "E1"), ev(2, "E1"), ev(1, "E1"), ev(10, "E1"), ev(9, "E1"));
  assert.deepEqual(log.events, ["E1:1", "E1:2", "E1:10"]);
  client.close();
});

test("after 1001 the client reconnects at once and resumes from its last event and epoch", async () => {
  let { client, log, sub, ws } = await followed();
  ws.push(ev(1, "E1"), ev(2, "E1"), ev(3, "E1"));
  ws.serverClose(1001, "server shutting down");
  assert.equal(closes(log)[0].retryInMs, 0);
  assert.equal(sub.state, "subscribing");
  ws = await FakeSocket.nth(1);
  ws.open("gw-2");
  const again = ws.subscribeOf("CA1");
  assert.equal(again.since, "3");
  assert.equal(again.epoch, "E1");
  ws.push({ type: "subscribed", id: again.id, call: record(), recovered: true }, ev(3, "E1"), ev(4, "E1"));
  assert.deepEqual(log.events, ["E1:1", "E1:2", "E1:3", "E1:4"]);
  assert.deepEqual(sub.position, { eventId: "4", epoch: "E1" });
  assert.equal(sub.state, "active");
  assert.deepEqual(log.lost, []);
  client.close();
});

test("a reset reaches onLost, and the new epoch is delivered from event 1", async () => {
  const { client, log, ws } = await followed();
  ws.push(ev(1, "E1"), ev(2, "E1"), ev(3, "E1"));
  ws.push({ type: "reset", call_sid: "CA1", epoch: "E2", recovered: false });
  ws.push(ev(1, "E2"), ev(2, "E2"), ev(4, "E1"), ev(2, "E2"), ev(3, "E2"));
  assert.deepEqual(log.events, ["E1:1", "E1:2", "E1:3", "E2:1", "E2:2", "E2:3"]);
  assert.deepEqual(log.lost, [{ callSid: "CA1", reason: "reset", epoch: "E2" }]);
  client.close();
});

test("recovered:false reaches onLost, and what the gateway still has is delivered", async () => {
  const { client, log, follow } = setup();
  follow("CA1", { since: "50" });
  const ws = await FakeSocket.nth(0);
  ws.open();
  assert.equal(ws.subscribeOf("CA1").since, "50");
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record(), recovered: false });
  ws.push(ev(4), ev(5), ev(5));
  assert.deepEqual(log.events, ["-:4", "-:5"]);
  assert.deepEqual(log.lost, [{ callSid: "CA1", reason: "history", epoch: undefined }]);
  client.close();
});

test("resuming from an older epoch: the later epochs' events are delivered, the old epoch's are not repeated", async () => {
  const { client, log, follow } = setup();
  const sub = follow("CA1", { since: "5", epoch: "E1" });
  let ws = await FakeSocket.nth(0);
  ws.open();
  assert.deepEqual({ ...ws.subscribeOf("CA1"), id: "" }, { type: "subscribe", call: "CA1", since: "5", epoch: "E1", id: "" });
  // The events that follow continue after the since: the rest of E1 the
  // gateway still holds, then E2.
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record(), recovered: false, epoch: "E1", event_id: "5" });
  ws.push(ev(6, "E1"), ev(1, "E2"), ev(2, "E2"), ev(7, "E1"));
  assert.deepEqual(log.events, ["E1:6", "E2:1", "E2:2"]);
  assert.equal(log.lost.length, 1);
  ws.serverClose(1006);
  ws = await FakeSocket.nth(1);
  ws.open();
  assert.equal(ws.subscribeOf("CA1").since, "2");
  assert.equal(ws.subscribeOf("CA1").epoch, "E2");
  assert.deepEqual(sub.position, { eventId: "2", epoch: "E2" });
  client.close();
});

test("a live subscription resumes from the event_id and epoch of its subscribed frame", async () => {
  const { client, follow } = setup();
  follow("CA1");
  follow("CA2");
  let ws = await FakeSocket.nth(0);
  ws.open();
  assert.equal(ws.subscribeOf("CA1").since, undefined);
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record(), epoch: "E1", event_id: "7" });
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA2").id, call: record({ call_sid: "CA2" }) });
  ws.serverClose(4008, "send queue overflow");
  ws = await FakeSocket.nth(1);
  ws.open();
  assert.equal(ws.subscribeOf("CA1").since, "7");
  assert.equal(ws.subscribeOf("CA1").epoch, "E1");
  assert.equal(ws.subscribeOf("CA2").since, "0"); // no event yet: everything after none
  client.close();
});

test("frames without an epoch count as the current epoch", async () => {
  const { client, log, ws } = await followed();
  ws.push(ev(4), ev(5, "E1"), ev(5), ev(6), ev(6, "E1"), ev(7, "E1"));
  assert.deepEqual(log.events, ["-:4", "E1:5", "-:6", "E1:7"]);
  client.close();
});

test("onStatus follows the record and the status, completed and failed events", async () => {
  const { client, log, follow } = setup();
  follow("CA1", { history: true });
  const ws = await FakeSocket.nth(0);
  ws.open();
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record({ status: "initiated" }), recovered: true });
  ws.push(ev(1, "E1", { event: "status", data: { status: "in-progress" } }), ev(2, "E1"));
  ws.push(ev(3, "E1", { event: "completed", data: { transcript: [], analysis: null } }));
  assert.deepEqual(log.statuses, ["initiated", "in-progress", "done"]);
  client.close();
});

// What each close code makes the client do: reconnect (how soon) or stop.
const closeCases = [
  { code: 1001, retry: "now" },
  { code: 4008, retry: "now" },
  { code: 1006, retry: "backoff" },
  { code: 1011, retry: "backoff" },
  { code: 1000, retry: "backoff" },
  { code: 4029, retry: "slow" },
  { code: 4030, retry: "slow" },
  { code: 1013, retry: "slow" },
  { code: 4001, retry: "now", getToken: "rejected" },
  { code: 4002, retry: "now", getToken: "expired" },
  { code: 4001, retry: "stop", token: "fixed" },
  { code: 4002, retry: "stop", token: "fixed" },
  { code: 4003, retry: "stop" },
  { code: 1002, retry: "stop" },
  { code: 1008, retry: "stop" },
  { code: 1009, retry: "stop" },
];

for (const c of closeCases) {
  const how = c.getToken ? " with getToken" : c.token ? " with a fixed token" : "";
  test(`close ${c.code}${how}: ${c.retry === "stop" ? "a terminal error, no reconnect" : `reconnect (${c.retry})`}`, async () => {
    FakeSocket.reset();
    const reasons = [];
    const o = c.getToken ? { getToken: (r) => (reasons.push(r), `tok-${reasons.length}`) } : c.token ? { token: c.token } : {};
    const { client, log, follow } = setup({ ...o, reconnect: { baseMs: 2, maxMs: 50 } });
    const sub = follow("CA1", { history: true });
    let ws = await FakeSocket.nth(0);
    ws.open();
    ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record(), recovered: true }, ev(1, "E1"));
    ws.serverClose(c.code, "why");
    const closed = closes(log)[0];
    assert.equal(closed.code, c.code);
    if (c.retry === "stop") {
      assert.equal(closed.retryInMs, undefined);
      assert.equal(sub.state, "closed");
      const err = log.errors.find((e) => e.call === "CA1");
      assert.ok(err instanceof CallgateError);
      assert.equal(err.code, "closed");
      assert.equal(err.closeCode, c.code);
      assert.equal(err.terminal, true);
      assert.ok(log.errors.some((e) => e.call === undefined && e.closeCode === c.code), "the client's onError hears it too");
      assert.equal(FakeSocket.all.length, 1, "no reconnect");
      client.close();
      return;
    }
    if (c.retry === "now") assert.equal(closed.retryInMs, 0);
    if (c.retry === "slow") assert.ok(closed.retryInMs >= 2, `slow codes wait at least the base (${closed.retryInMs})`);
    ws = await FakeSocket.nth(1);
    if (c.getToken) {
      assert.deepEqual(reasons, ["connect", c.getToken]);
      ws.open();
      assert.deepEqual(ws.sent[0], { type: "auth", token: "tok-2" });
    } else {
      ws.open();
    }
    assert.equal(ws.subscribeOf("CA1").since, "1");
    client.close();
  });
}

test("after 4029 the client sends half as fast", async () => {
  const { client, log, follow } = setup({ frameBurst: 4, frameRate: 1000 });
  follow("CA1");
  follow("CA2");
  follow("CA3");
  let ws = await FakeSocket.nth(0);
  ws.open();
  assert.equal(ws.sent.length, 3, "a burst of 4 has room for 3 subscribes");
  ws.serverClose(4029, "too many frames: slow down");
  ws = await FakeSocket.nth(1);
  ws.open();
  assert.equal(ws.sent.length, 2, "a burst of 2 now");
  await waitFor(() => ws.sent.length === 3, "the third subscribe");
  assert.equal(log.errors.length, 0);
  client.close();
});

test("token_expiring is answered with a fresh token, and only with a fresh one", async () => {
  const tokens = ["t1", "t1", "t2"];
  const reasons = [];
  const { client, follow } = setup({ getToken: (r) => (reasons.push(r), tokens.shift()) });
  follow("CA1");
  let ws = await FakeSocket.nth(0);
  ws.open();
  ws.push({ type: "token_expiring", expires_at: "2026-11-30T00:00:00Z" });
  await waitFor(() => reasons.length === 2, "the first refresh");
  ws.push({ type: "token_expiring", expires_at: "2026-11-30T00:00:00Z" });
  await waitFor(() => ws.frames("auth").length === 2, "the fresh token");
  // Not t1 again in between: the same token is not sent twice.
  assert.deepEqual(ws.frames("auth").map((f) => f.token), ["t1", "t2"]);
  assert.deepEqual(reasons, ["connect", "expiring", "expiring"]);
  // A reconnect that is not about the token reuses it.
  ws.serverClose(1001);
  ws = await FakeSocket.nth(1);
  ws.open();
  assert.equal(ws.sent[0].token, "t2");
  assert.equal(reasons.length, 3);
  client.close();
});

test("a token about to expire is not reused for a new connection", async () => {
  const jwt = (exp) => `h.${Buffer.from(JSON.stringify({ sub: "u", exp })).toString("base64url")}.s`;
  const soon = jwt(Math.floor(Date.now() / 1000) + 5);
  const later = jwt(Math.floor(Date.now() / 1000) + 3600);
  const reasons = [];
  const { client, follow } = setup({ token: soon, getToken: (r) => (reasons.push(r), later) });
  follow("CA1");
  const ws = await FakeSocket.nth(0);
  ws.open();
  assert.equal(ws.sent[0].token, later);
  assert.deepEqual(reasons, ["connect"]);
  client.close();
});

test("call_not_found ends the subscription and is not retried; the iterator throws it", async () => {
  const { client, log, follow } = setup();
  const sub = follow("nope");
  const stream = client.events("nope2");
  let ws = await FakeSocket.nth(0);
  ws.open();
  const msg = "no call has that call_sid or conversation_id";
  ws.push({ type: "error", id: ws.subscribeOf("nope").id, code: "call_not_found", message: msg });
  ws.push({ type: "error", id: ws.subscribeOf("nope2").id, code: "call_not_found", message: msg });
  assert.equal(sub.state, "closed");
  assert.equal(log.errors[0].code, "call_not_found");
  assert.equal(log.errors[0].terminal, true);
  await assert.rejects(stream.next(), (e) => e.code === "call_not_found");
  ws.serverClose(1001);
  ws = await FakeSocket.nth(1);
  ws.open();
  assert.equal(ws.frames("subscribe").length, 0, "not subscribed again after a reconnect");
  client.close();
});

test("unavailable: the subscribe is retried with backoff", async () => {
  const { client, log, follow } = setup();
  const sub = follow("CA1");
  const ws = await FakeSocket.nth(0);
  ws.open();
  ws.push({ type: "error", id: ws.subscribeOf("CA1").id, code: "unavailable", message: "retry later" });
  assert.equal(log.errors[0].terminal, false);
  await waitFor(() => ws.frames("subscribe").length === 2, "the second subscribe");
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record() });
  assert.equal(sub.state, "active");
  client.close();
});

test("no frame after a ping: the connection counts as dead and is replaced", async () => {
  const { client, log, ws } = await followed({ keepalive: { intervalMs: 5, timeoutMs: 10 } });
  await waitFor(() => ws.frames("ping").length === 1, "a ping");
  assert.deepEqual(ws.frames("ping")[0], { type: "ping" });
  const next = await FakeSocket.nth(1);
  assert.match(closes(log)[0].reason, /no frame within 10 ms/);
  assert.equal(ws.closedWith, 1000);
  next.open();
  assert.equal(next.subscribeOf("CA1").since, "0");
  client.close();
});

test("a connection that never answers its handshake is given up", async () => {
  const { client, log, follow } = setup({ keepalive: { intervalMs: 0, timeoutMs: 10 } });
  follow("CA1");
  const ws = await FakeSocket.nth(0); // never opened
  const next = await FakeSocket.nth(1);
  assert.match(closes(log)[0].reason, /no frame within 10 ms/);
  assert.equal(ws.closedWith, 1000);
  next.open();
  assert.equal(next.subscribeOf("CA1").call, "CA1");
  client.close();
});

test("a list of URLs is tried in turn; http(s) becomes ws(s)", async () => {
  const { client, follow } = setup({ url: ["ws://a", "http://b/", "https://c/ws/calls/transcriptions"] });
  follow("CA1");
  for (let i = 0; i < 3; i++) (await FakeSocket.nth(i)).serverClose(1006);
  await FakeSocket.nth(3);
  assert.deepEqual(
    FakeSocket.all.map((s) => s.url),
    ["ws://a/ws/calls/transcriptions", "ws://b/ws/calls/transcriptions", "wss://c/ws/calls/transcriptions", "ws://a/ws/calls/transcriptions"],
  );
  const t = client.topic("workflows");
  await FakeSocket.nth(4);
  assert.equal(FakeSocket.all[4].url, "ws://a/ws/workflows");
  t.close();
  client.close();
});

test("a topic's versions never go back, across reconnects", async () => {
  const { client } = setup();
  const seen = [];
  const t = client.topic("workflows", { onState: (s) => seen.push(s.version) });
  let ws = await FakeSocket.nth(0);
  ws.open();
  ws.push({ type: "state", topic: "workflows", version: 3, data: { a: 3 } }, { type: "state", topic: "workflows", version: 4, data: { a: 4 } });
  ws.serverClose(1001);
  ws = await FakeSocket.nth(1);
  ws.open();
  ws.push({ type: "state", topic: "workflows", version: 2, data: { a: 2 } }, { type: "state", topic: "workflows", version: 4, data: { a: 4 } });
  ws.push({ type: "state", topic: "workflows", version: 5, data: { a: 5 } });
  assert.deepEqual(seen, [3, 4, 5]);
  assert.equal(t.version, 5);
  assert.deepEqual(t.data, { a: 5 });
  client.close();
});

test("a topic's later epoch is newer whatever its version; an older one is dropped", async () => {
  const { client } = setup();
  const seen = [];
  const t = client.topic("workflows", { onState: (s) => seen.push(`${s.epoch}/${s.version}`) });
  const ws = await FakeSocket.nth(0);
  ws.open();
  ws.push({ type: "state", topic: "workflows", version: 7, epoch: "1700000000000", data: { a: 7 } });
  // The store lost the state and counts again in a new epoch.
  ws.push({ type: "state", topic: "workflows", version: 1, epoch: "1700000005000", data: { a: 1 } });
  ws.push({ type: "state", topic: "workflows", version: 9, epoch: "1700000000000", data: { stale: true } });
  ws.push({ type: "state", topic: "workflows", version: 2, epoch: "1700000005000", data: { a: 2 } });
  assert.deepEqual(seen, ["1700000000000/7", "1700000005000/1", "1700000005000/2"]);
  assert.equal(t.epoch, "1700000005000");
  assert.deepEqual(t.data, { a: 2 });
  client.close();
});

test("events(): an async iterator; breaking out unsubscribes", async () => {
  const { client } = setup();
  const ws0 = FakeSocket.nth(0);
  const got = [];
  const done = (async () => {
    for await (const e of client.events("CA1", { history: true })) {
      got.push(e.event_id);
      if (got.length === 3) break;
    }
  })();
  const ws = await ws0;
  ws.open();
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record(), recovered: true });
  ws.push(ev(1, "E1"), ev(1, "E1"), ev(2, "E1"), ev(3, "E1"), ev(4, "E1"));
  await done;
  assert.deepEqual(got, ["1", "2", "3"]);
  assert.equal(ws.frames("unsubscribe").length, 1);
  // client.close() ends an iterator that waits.
  const stream = client.events("CA2");
  const pending = stream.next();
  client.close();
  assert.deepEqual(await pending, { value: undefined, done: true });
});

test("one subscription per call: by the same identifier it throws, by the other it fails", async () => {
  const { client, log, follow } = setup();
  follow("CA1");
  assert.throws(() => follow("CA1"), /already subscribed/);
  const dup = follow("conv1");
  const ws = await FakeSocket.nth(0);
  ws.open();
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record() });
  ws.push({ type: "subscribed", id: ws.subscribeOf("conv1").id, call: record({ conversation_id: "conv1" }) });
  assert.equal(dup.state, "closed");
  assert.equal(log.errors[0].code, "already_subscribed");
  assert.equal(ws.frames("unsubscribe").length, 0, "the first subscription stays");
  client.close();
});

test("after unsubscribe no event is delivered and nothing is resubscribed", async () => {
  const { client, log, follow } = setup();
  const sub = follow("CA1", { history: true });
  let ws = await FakeSocket.nth(0);
  ws.open();
  ws.push({ type: "subscribed", id: ws.subscribeOf("CA1").id, call: record(), recovered: true }, ev(1, "E1"));
  sub.unsubscribe();
  assert.deepEqual({ ...ws.frames("unsubscribe")[0], id: "" }, { type: "unsubscribe", call: "CA1", id: "" });
  ws.push(ev(2, "E1"));
  ws.serverClose(1001);
  ws = await FakeSocket.nth(1);
  ws.open();
  assert.equal(ws.frames("subscribe").length, 0);
  assert.deepEqual(log.events, ["E1:1"]);
  client.close();
});

test("dist/index.js is one self-contained module", async () => {
  const { readFile } = await import("node:fs/promises");
  const src = await readFile(new URL("../dist/index.js", import.meta.url), "utf8");
  assert.doesNotMatch(src, /^\s*import\s/m);
  assert.doesNotMatch(src, /\bfrom\s+["']/);
});
