// A scripted WebSocket: the test plays the gateway.

export class FakeSocket {
  /** Every socket made, in order. */
  static all = [];
  static waiters = [];

  constructor(url) {
    this.url = url;
    this.sent = [];
    this.listeners = {};
    this.closedWith = undefined;
    FakeSocket.all.push(this);
    for (const w of FakeSocket.waiters.splice(0)) w();
  }

  /** Resolves with the socket number n (0-based) once it exists. */
  static async nth(n) {
    while (FakeSocket.all.length <= n) await new Promise((r) => FakeSocket.waiters.push(r));
    return FakeSocket.all[n];
  }

  static reset() {
    FakeSocket.all = [];
    FakeSocket.waiters = [];
  }

  addEventListener(type, f) {
    (this.listeners[type] ??= []).push(f);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code = 1000) {
    this.closedWith ??= code;
  }

  // The gateway's side.

  fire(type, ev) {
    for (const f of this.listeners[type] ?? []) f(ev);
  }

  /** Opens the socket and greets like the gateway. */
  open(instance = "gw-1") {
    this.fire("open");
    this.push({ type: "welcome", connection_id: "c-" + FakeSocket.all.indexOf(this), instance_id: instance, user: "u1" });
  }

  push(...frames) {
    for (const f of frames) this.fire("message", { data: JSON.stringify(f) });
  }

  serverClose(code, reason = "") {
    this.fire("close", { code, reason });
  }

  /** The frames of a type the client sent. */
  frames(type) {
    return this.sent.filter((f) => f.type === type);
  }

  /** The last subscribe the client sent for call. */
  subscribeOf(call) {
    return this.frames("subscribe").findLast((f) => f.call === call);
  }
}

/**
 * waitFor resolves once cond() is true (or resolves to true); it checks every few milliseconds,
 * the first time after a turn of the event loop, so that the promises
 * already settled have run.
 */
export async function waitFor(cond, what = "condition", ms = 5000) {
  const deadline = Date.now() + ms;
  do {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  } while (!(await cond()));
}

export function record(o = {}) {
  return {
    call_sid: "CA1",
    status: "in-progress",
    created_at: "2026-11-30T00:00:00Z",
    updated_at: "2026-11-30T00:00:00Z",
    ...o,
  };
}

export function ev(id, epoch, more = {}) {
  const f = {
    type: "event",
    event_id: String(id),
    event: "transcript",
    call_sid: "CA1",
    time: "2026-11-30T00:00:00Z",
    data: { role: "agent", text: `turn ${id}`, final: true, source_event_id: id },
    ...more,
  };
  if (epoch !== undefined) f.epoch = epoch;
  return f;
}
