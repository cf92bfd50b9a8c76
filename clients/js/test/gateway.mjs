// Real gateways for the tests: the callgate binary built from this
// repository, several instances on one real redis-server, and the HTTP
// calls a backend makes (registering calls, signed live webhooks, topic
// states).

import { spawn, execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import WebSocket from "ws";
import { waitFor } from "./fake.mjs";

export const REPO = fileURLToPath(new URL("../../..", import.meta.url));
export const WEBHOOK_SECRET = "whsec_js_client_test";
export const API_KEY = "js-client-test-key";
export const JWT_SECRET = "js-client-jwt-secret";

const tmp = mkdtempSync(path.join(os.tmpdir(), "callgate-js-"));
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));

/** scratchDir returns a new directory that is removed when the tests end. */
export function scratchDir() {
  return mkdtempSync(path.join(tmp, "dir-"));
}

/** buildGateway builds ./cmd/callgate (or takes CALLGATE_BIN) and returns its path. */
export async function buildGateway() {
  if (process.env.CALLGATE_BIN) return process.env.CALLGATE_BIN;
  const bin = path.join(tmp, "callgate");
  await promisify(execFile)("go", ["build", "-o", bin, "./cmd/callgate"], { cwd: REPO });
  return bin;
}

const givenPorts = new Set();

/** ephemeralLow is the lowest port of the kernel's ephemeral range, or 0 where it cannot be read. */
function ephemeralLow() {
  try {
    return Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}

/** listenOn resolves to the port listened on (0: any), or null when it is taken. */
async function listenOn(port) {
  const srv = net.createServer();
  const ok = await new Promise((r) => {
    srv.once("error", () => r(false));
    srv.listen(port, "127.0.0.1", () => r(true));
  });
  if (!ok) return null;
  const got = srv.address().port;
  await new Promise((r) => srv.close(r));
  return got;
}

/**
 * freePort returns a loopback port that was free a moment ago and that this process has not
 * handed out before. A port found by listening on port 0 comes from the ephemeral range, which
 * outgoing connections also take their local ports from, so one of them could take it before
 * the server the test starts binds it: below that range (10000-22767, as the Go tests' porttest
 * package does), only other listeners compete.
 */
export async function freePort() {
  const below = ephemeralLow() > 32767;
  for (let i = 0; i < 10000; i++) {
    const port = await listenOn(below ? 10000 + Math.floor(Math.random() * 12768) : 0);
    if (port !== null && !givenPorts.has(port)) {
      givenPorts.add(port);
      return port;
    }
  }
  throw new Error("no free port found");
}

/** Redis is a redis-server of the test's own. */
export class Redis {
  /** start starts a redis-server on port (default: a free one) with extra arguments. */
  static async start({ port, args = [] } = {}) {
    const r = new Redis();
    r.port = port ?? (await freePort());
    r.proc = spawn("redis-server", ["--port", String(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...args], { stdio: "ignore" });
    r.exited = new Promise((resolve) => r.proc.once("exit", resolve));
    try {
      await waitFor(async () => (await r.command("PING").catch(() => "")) === "PONG", "redis-server", 10000);
    } catch (err) {
      await r.stop();
      throw err;
    }
    return r;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** command sends one command and returns the first line of the reply, without its type byte. */
  command(...args) {
    return new Promise((resolve, reject) => {
      const sock = net.connect(this.port, "127.0.0.1");
      let buf = "";
      sock.on("error", reject);
      sock.on("data", (d) => {
        buf += d;
        const end = buf.indexOf("\r\n");
        if (end < 0) return;
        sock.destroy();
        if (buf[0] === "-") reject(new Error(buf.slice(1, end)));
        else resolve(buf.slice(1, end));
      });
      sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(""));
    });
  }

  async stop() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
    await this.exited;
  }
}

/** Gateway is one callgate process. */
export class Gateway {
  constructor(bin, redis, { prefix, id, flags = [] }) {
    Object.assign(this, { bin, redis, prefix, id, flags });
  }

  async start() {
    this.port = await freePort();
    this.stderr = "";
    this.proc = spawn(
      this.bin,
      [
        "--redis-url", this.redis.url, "--redis-prefix", this.prefix,
        "--webhook-secret", WEBHOOK_SECRET, "--api-key", API_KEY, "--jwt-secret", JWT_SECRET,
        "--addr", `127.0.0.1:${this.port}`, "--instance-id", this.id,
        "--log-level", "error", "--shutdown-timeout", "5s",
        ...this.flags,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    this.proc.stderr.on("data", (d) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.proc.once("exit", resolve));
    try {
      await waitFor(async () => {
        if (!this.alive) throw new Error(`${this.id} exited: ${this.stderr}`);
        return (await fetch(this.http + "/readyz").catch(() => null))?.status === 200;
      }, `${this.id} ready`, 15000);
    } catch (err) {
      await this.kill("SIGKILL");
      throw err;
    }
    return this;
  }

  get alive() {
    return this.proc.exitCode === null && this.proc.signalCode === null && !this.stopped;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}`;
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** kill sends signal and, unless it is SIGSTOP, waits for the process to end. */
  async kill(signal) {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    if (signal === "SIGSTOP") {
      this.stopped = true;
      this.proc.kill(signal);
      return;
    }
    if (this.stopped) this.proc.kill("SIGCONT");
    this.proc.kill(signal);
    await this.exited;
  }

  /** metric reads a counter or gauge from /metrics. */
  async metric(name) {
    const text = await (await fetch(this.http + "/metrics")).text();
    const line = text.split("\n").find((l) => l.startsWith(name + " "));
    return line ? Number(line.split(" ")[1]) : 0;
  }
}

/**
 * Cluster is n gateways on one Redis, with a key prefix of their own, and
 * what a backend does with them. HTTP requests go to a live instance,
 * and to another when one fails.
 */
export class Cluster {
  static async start(t, { bin, redis, n = 1, flags = [] }) {
    const c = new Cluster();
    c.redis = redis;
    c.prefix = "js" + randomBytes(4).toString("hex");
    c.gateways = [];
    t.after(() => c.stop());
    for (let i = 0; i < n; i++) {
      c.gateways.push(await new Gateway(bin, redis, { prefix: c.prefix, id: `gw-${i}`, flags }).start());
    }
    return c;
  }

  get urls() {
    return this.gateways.map((g) => g.url);
  }

  byId(id) {
    return this.gateways.find((g) => g.id === id);
  }

  async stop() {
    await Promise.all(this.gateways.map((g) => g.kill("SIGKILL")));
  }

  /** request sends a request to a live instance, another after a failure or a 5xx. */
  async request(method, path, body, headers = {}) {
    let last;
    for (let attempt = 0; attempt < 20; attempt++) {
      const live = this.gateways.filter((g) => g.alive);
      const g = live[attempt % live.length];
      try {
        const res = await fetch(g.http + path, { method, body, headers: { "Content-Type": "application/json", ...headers } });
        const out = await res.json();
        if (res.status < 500) {
          if (res.status >= 300) throw Object.assign(new Error(`${method} ${path}: ${res.status} ${JSON.stringify(out)}`), { final: true });
          return out;
        }
        last = new Error(`${method} ${path}: ${res.status} ${JSON.stringify(out)}`);
      } catch (err) {
        if (err.final) throw err;
        last = err;
      }
    }
    throw last;
  }

  /** register registers (or updates) a call through the API. */
  register(callSid, fields = {}) {
    return this.request("POST", "/api/calls", JSON.stringify({ call_sid: callSid, ...fields }), { Authorization: `Bearer ${API_KEY}` });
  }

  /**
   * say posts a signed live agent_response for the call: n is the turn
   * (ElevenLabs' event_id, which must differ per turn). It returns the
   * webhook's answer, with the published event_id.
   */
  say(callSid, n, text = `turn ${n}`) {
    return this.live(callSid, { type: "agent_response", agent_response_event: { agent_response: text, event_id: n } });
  }

  /** live posts a signed live webhook with an ElevenLabs event for the call. */
  live(callSid, event) {
    const body = JSON.stringify({ call_sid: callSid, event });
    return this.request("POST", "/webhooks/transcription", body, { "ElevenLabs-Signature": sign(body) });
  }

  putTopic(name, data) {
    return this.request("PUT", `/api/topics/${name}`, JSON.stringify(data), { Authorization: `Bearer ${API_KEY}` });
  }
}

/** sign signs a webhook body as the README's Signatures section says. */
export function sign(body, secret = WEBHOOK_SECRET) {
  const t = Math.floor(Date.now() / 1000);
  return `t=${t},v0=${createHmac("sha256", secret).update(`${t}.${body}`).digest("hex")}`;
}

/** token mints an HS256 client token; ttl in seconds. */
export function token({ sub = "user-1", org, ttl = 3600, secret = JWT_SECRET } = {}) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + ttl, ...(org ? { org } : {}) };
  const head = enc({ alg: "HS256", typ: "JWT" }) + "." + enc(claims);
  return head + "." + createHmac("sha256", secret).update(head).digest("base64url");
}

/**
 * TestSocket is ws's WebSocket, counted, and with a way to stop reading
 * from the network as a slow client would.
 */
export class TestSocket extends WebSocket {
  static made = [];
  constructor(url) {
    super(url);
    TestSocket.made.push(this);
  }
  pauseReading() {
    this._socket.pause();
  }
  resumeReading() {
    this._socket.resume();
  }
}

/** rawEventFrame subscribes with a plain socket and returns the first event frame of the call. */
export async function rawEventFrame(url, call, jwt) {
  const ws = new WebSocket(url + "/ws/calls/transcriptions");
  try {
    return await new Promise((resolve, reject) => {
      ws.on("open", () => {
        ws.send(JSON.stringify({ type: "auth", token: jwt }));
        ws.send(JSON.stringify({ type: "subscribe", call, since: "0" }));
      });
      ws.on("message", (d) => {
        const f = JSON.parse(d.toString());
        if (f.type === "event") resolve(f);
        if (f.type === "error") reject(new Error(f.message));
      });
      ws.on("error", reject);
    });
  } finally {
    ws.close();
  }
}

/**
 * Browser is a headless Chromium driven through the DevTools protocol, or
 * null when no chromium is installed.
 */
export class Browser {
  static async launch() {
    const exe = ["chromium", "chromium-browser", "google-chrome"].map(which).find(Boolean);
    if (!exe) return null;
    const b = new Browser();
    const dir = scratchDir();
    b.proc = spawn(exe, ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0", `--user-data-dir=${dir}`, "about:blank"], { stdio: "ignore" });
    b.exited = new Promise((resolve) => b.proc.once("exit", resolve));
    const portFile = path.join(dir, "DevToolsActivePort");
    let port;
    await waitFor(() => (port = readIfExists(portFile).split("\n")[0]), "chromium", 20000);
    let page;
    await waitFor(async () => {
      const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
      return (page = targets.find((t) => t.type === "page"));
    }, "a page");
    b.ws = new WebSocket(page.webSocketDebuggerUrl);
    b.calls = new Map();
    b.next = 1;
    b.ws.on("message", (d) => {
      const m = JSON.parse(d.toString());
      const call = b.calls.get(m.id);
      if (!call) return;
      b.calls.delete(m.id);
      m.error ? call.reject(new Error(m.error.message)) : call.resolve(m.result);
    });
    await new Promise((resolve, reject) => b.ws.once("open", resolve).once("error", reject));
    return b;
  }

  send(method, params = {}) {
    const id = this.next++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => this.calls.set(id, { resolve, reject }));
  }

  /** eval evaluates a JavaScript expression in the page and returns its value. */
  async eval(expression) {
    const { result, exceptionDetails } = await this.send("Runtime.evaluate", { expression, returnByValue: true });
    if (exceptionDetails) throw new Error(exceptionDetails.text);
    return result.value;
  }

  /** close asks Chromium to quit, so that it ends its own processes, and waits for it. */
  async close() {
    const quit = this.send("Browser.close").catch(() => {});
    const late = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await Promise.race([quit, this.exited]);
    await this.exited;
    clearTimeout(late);
    this.ws.close();
  }
}

function which(name) {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const p = path.join(dir, name);
    if (readIfExists(p, true)) return p;
  }
  return null;
}

function readIfExists(p, justCheck = false) {
  try {
    return justCheck ? (statSync(p).isFile() ? p : "") : readFileSync(p, "utf8");
  } catch {
    return "";
  }
}
