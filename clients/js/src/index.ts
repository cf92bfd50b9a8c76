// A client for the callgate WebSocket gateway. It follows calls and state
// topics, and keeps following them across reconnects, instance restarts
// and token expiry without losing an event or delivering one twice; over
// Server-Sent Events where a WebSocket cannot be opened.
//
// This file is the whole runtime: it imports nothing, so the built
// dist/index.js can be served to a page as one ES module.

import type {
  CallEvent,
  CallRecord,
  CallStatus,
  ErrorFrame,
  ResetFrame,
  ServerFrame,
  SubscribedFrame,
  TopicState,
  WelcomeFrame,
} from "./protocol.js";

export type {
  AudioAvailableEvent,
  CallEvent,
  CallRecord,
  CallStatus,
  CompletedEvent,
  ErrorFrame,
  EventFrameBase,
  FailedEvent,
  InterruptionEvent,
  ResetFrame,
  ServerFrame,
  StatusEvent,
  SubscribedFrame,
  TopicState,
  TranscriptCorrectionEvent,
  TranscriptData,
  TranscriptEvent,
  WelcomeFrame,
} from "./protocol.js";

/** The part of the standard WebSocket API the client uses. */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "error", listener: () => void): void;
  addEventListener(type: "message", listener: (event: { data: unknown }) => void): void;
  addEventListener(type: "close", listener: (event: { code: number; reason: string }) => void): void;
}

/** A WebSocket class: the browser's, Node 22's global one, or `WebSocket` from the `ws` package. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The part of the standard EventSource API the client uses. */
export interface EventSourceLike {
  close(): void;
  addEventListener(type: string, listener: (event: { data?: unknown }) => void): void;
}

/** An EventSource class: the browser's, or one for Node (the `eventsource` package's). */
export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** How the client reaches the gateway: WebSockets, or Server-Sent Events streams. */
export type Transport = "websocket" | "sse";

/**
 * Why getToken is called: `connect` for a new connection (only when no
 * token is at hand or it is about to expire), `expiring` after the
 * gateway's `token_expiring`, `rejected` after close 4001 (invalid token),
 * `expired` after close 4002.
 */
export type TokenReason = "connect" | "expiring" | "rejected" | "expired";

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * Where the gateway is: its base URL (`wss://gw.example.com`; `https:`
   * is turned into `wss:`, a path is kept, and the call socket's full URL
   * is accepted too); or a list of such URLs, one per connection attempt
   * in turn; or a function that returns the URL for attempt n (0, 1, 2, …).
   */
  url: string | readonly string[] | ((attempt: number) => string | Promise<string>);
  /** A JWT, sent in the first frame of each connection (never in the URL). */
  token?: string;
  /**
   * Returns a fresh JWT from your backend. Called before the first
   * connection, on `token_expiring` (the answer is sent as an `auth`
   * frame), and before reconnecting after close 4001 or 4002. Its token is
   * reused for other reconnects while it is more than 10 s from its `exp`.
   */
  getToken?: (reason: TokenReason) => string | Promise<string>;
  /** The WebSocket class; default `globalThis.WebSocket` (Node 20 has none: pass `ws`'s). */
  WebSocket?: WebSocketConstructor;
  /**
   * `websocket`, `sse` (Server-Sent Events: for networks whose proxies break
   * WebSockets; the client only listens, so the calls it follows share one
   * stream, reopened from each call's position when the set of calls
   * changes, and the token goes in the URL, as EventSource sets no
   * headers), or `auto` (the default): WebSockets, and SSE from then on
   * once `sseAfter` connection attempts in a row failed before the
   * gateway's welcome, or at once where there is an EventSource and no
   * WebSocket.
   */
  transport?: "auto" | Transport;
  /** With `auto`: WebSocket attempts in a row that fail before the welcome, before falling back to SSE. Default 3. */
  sseAfter?: number;
  /** The EventSource class for SSE; default `globalThis.EventSource` (Node 20 has none: pass the `eventsource` package's). */
  EventSource?: EventSourceConstructor;
  /** Reconnect backoff: attempt n waits a random time in [0, min(maxMs, baseMs·2ⁿ)]. */
  reconnect?: {
    /** Default 500. */
    baseMs?: number;
    /** Default 30000. */
    maxMs?: number;
  };
  /** The application-level keepalive. */
  keepalive?: {
    /** How often to send `{"type":"ping"}`; 0 turns it off. Default 25000. */
    intervalMs?: number;
    /**
     * How long to wait for any frame after a ping, or for the first frame
     * of a new connection, before the connection counts as dead. Default 10000.
     */
    timeoutMs?: number;
  };
  /** Frames per second the client sends at most per socket (the gateway allows 20 by default). Default 10. Halved after each close 4029. */
  frameRate?: number;
  /** Frames the client sends at once before frameRate applies (the gateway allows 50). Default 20. */
  frameBurst?: number;
  /** Every change of a socket's connection: for a status line, or logs. */
  onConnection?: (event: ConnectionEvent) => void;
  /** Errors that belong to no subscription: a token that could not be fetched, a terminal close, an error frame without id. */
  onError?: (error: CallgateError) => void;
}

/**
 * A socket's connection changed. `socket` is `"calls"` for the call
 * socket, or the topic's name.
 */
export type ConnectionEvent =
  /** url has no token, even when the stream carries one. */
  | { type: "connecting"; socket: string; url: string; attempt: number; transport: Transport }
  /** The gateway's welcome: the socket is up (and authenticated, if a token was sent). */
  | { type: "open"; socket: string; instanceId: string | undefined; connectionId: string; user: string; transport: Transport }
  /** The gateway accepted a token, the first or a refreshed one. */
  | { type: "authenticated"; socket: string; user: string; expiresAt: string | undefined }
  /** The socket closed. retryInMs: when it reconnects; undefined if it will not. */
  | { type: "closed"; socket: string; code: number; reason: string; retryInMs: number | undefined };

/** Where a subscription stands: the last event received. Pass it back as since/epoch to resume. */
export interface Position {
  eventId: string;
  epoch: string | undefined;
}

/** What {@link SubscribeOptions.onLost} is told. */
export interface LostInfo {
  /** The call's call_sid. */
  callSid: string;
  /**
   * `history`: the gateway no longer had every event after the position
   * (`recovered:false`); `reset`: the call's numbering restarted in a new
   * epoch (Redis lost its state). Either way some events may be missing:
   * fetch the call through your backend if you need them. What the gateway
   * still has follows.
   */
  reason: "history" | "reset";
  /** The call's epoch now, when known. */
  epoch: string | undefined;
}

/** Options of {@link Client.subscribe}. */
export interface SubscribeOptions {
  /** Resume after this event_id (a decimal string). */
  since?: string;
  /** The epoch of since. */
  epoch?: string;
  /** true: replay the call's whole stored history first (the same as since "0"). Without since or history, delivery starts with the next event. */
  history?: boolean;
  /** Each event of the call, once, in order. */
  onEvent?: (event: CallEvent) => void;
  /** The call's status: at subscribe, then on every change (status, completed and failed events). */
  onStatus?: (status: CallStatus, call: CallRecord) => void;
  /** Each `subscribed` reply, the first and those after a reconnect. recovered is as the gateway sent it. */
  onSubscribed?: (call: CallRecord, recovered: boolean | undefined) => void;
  /** Events may have been lost (recovered:false, or a reset): see {@link LostInfo}. */
  onLost?: (info: LostInfo) => void;
  /** An error about this call. When error.terminal is set the subscription has ended. */
  onError?: (error: CallgateError) => void;
}

/** Options of {@link Client.events}: those of subscribe, less onEvent. */
export type EventsOptions = Omit<SubscribeOptions, "onEvent">;

/** A call the client follows. */
export interface Subscription {
  /** The identifier it was subscribed with: a call_sid or a conversation_id. */
  readonly call: string;
  /** The call's call_sid, once the gateway confirmed the subscription. */
  readonly callSid: string | undefined;
  /** The call record as last known (its status follows the events). */
  readonly record: CallRecord | undefined;
  /** The last event received, to resume from later; undefined before any is known. */
  readonly position: Position | undefined;
  /** `subscribing` until the gateway confirms (again after each reconnect), `active`, or `closed`. */
  readonly state: "subscribing" | "active" | "closed";
  /** Stops following the call. */
  unsubscribe(): void;
}

/** The async iterator of {@link Client.events}. Breaking out of the loop unsubscribes. */
export interface EventStream extends AsyncIterableIterator<CallEvent> {
  readonly subscription: Subscription;
}

/** Options of {@link Client.topic}. */
export interface TopicOptions {
  /** Each new state: the current one on connecting, then every change. Versions only go up. */
  onState?: (state: TopicState) => void;
  /** An error about this topic. When error.terminal is set the subscription has ended. */
  onError?: (error: CallgateError) => void;
}

/** A state topic the client follows, on its own socket. */
export interface TopicSubscription {
  readonly name: string;
  /** The version of data; 0 before the first state. */
  readonly version: number;
  /** The epoch of version ("0" before the first state). */
  readonly epoch: string;
  /** The newest state received. */
  readonly data: unknown;
  readonly state: "connecting" | "open" | "closed";
  /** Stops following the topic and closes its socket. */
  close(): void;
}

/** A connection to a callgate gateway. */
export interface Client {
  /**
   * Follows a call by its call_sid or conversation_id. The call socket is
   * opened on the first subscribe. One subscription per call: subscribing
   * again to a call the client follows fails with `already_subscribed`.
   */
  subscribe(call: string, options?: SubscribeOptions): Subscription;
  /**
   * Follows a call as an async iterator of its events. It throws the
   * terminal error, if one ends the subscription; it ends when the client
   * closes.
   */
  events(call: string, options?: EventsOptions): EventStream;
  /** Stops following a call, by identifier or handle. */
  unsubscribe(call: string | Subscription): void;
  /** Follows a state topic (`/ws/<name>`). */
  topic(name: string, options?: TopicOptions): TopicSubscription;
  /** Closes every socket and ends every subscription. */
  close(): void;
}

/** An error reported by the client or the gateway. */
export class CallgateError extends Error {
  /**
   * The gateway's error code (`call_not_found`, `unavailable`, …) or one
   * of the client's: `closed` (a close that is not retried, see
   * closeCode), `token` (getToken failed), `connect` (no URL or socket
   * could be had), `already_subscribed`.
   */
  readonly code: string;
  /** The close code, for `closed`. */
  readonly closeCode: number | undefined;
  /** Whether what it is about (a subscription, a socket) has ended for good. */
  readonly terminal: boolean;
  /** The call it is about, as subscribed. */
  readonly call: string | undefined;

  constructor(code: string, message: string, more: { terminal: boolean; closeCode?: number; call?: string }) {
    super(message);
    this.name = "CallgateError";
    this.code = code;
    this.terminal = more.terminal;
    this.closeCode = more.closeCode;
    this.call = more.call;
  }
}

/**
 * Connects to a gateway. It returns at once; sockets open when something
 * is followed, and reconnect by themselves until {@link Client.close}.
 */
export function connect(options: ConnectOptions): Client {
  return new ClientImpl(options);
}

// ---------------------------------------------------------------------------
// Sockets

/** What a close code means for the next connection. */
type CloseAction = "now" | "token" | "backoff" | "slow" | "stop";

/** closeAction maps a close code to what the client does next. */
function closeAction(code: number): CloseAction {
  switch (code) {
    case 1001: // instance shutting down, or no pong: another instance will do
    case 4008: // we read too slowly; the history has what was dropped
      return "now";
    case 4001: // invalid token or none in time
    case 4002: // token expired
      return "token";
    case 4029: // too many frames
    case 4030: // too many connections for this user
    case 1013: // topic: event bus unavailable, try later
      return "slow";
    case 4003: // forbidden: another token would be needed
    case 1002: // protocol error
    case 1003: // unsupported data
    case 1007: // invalid payload
    case 1008: // policy violation
    case 1009: // frame too big
    case 1010: // extension required
      return "stop";
  }
  return code >= 4000 ? "slow" : "backoff"; // 1006 (network), 1000, 1011 and the unknown
}

const PING = '{"type":"ping"}';
const CALLS_PATH = "/ws/calls/transcriptions";

type Timer = ReturnType<typeof setTimeout>;

/** What a socket's owner is told. */
interface LinkOwner {
  /** The socket is open and the auth frame queued: queue what the owner needs. */
  opened(): void;
  /** A frame that is not the socket's own business. */
  frame(frame: ServerFrame): void;
  /** The socket closed; error is set when it will not reconnect. */
  closed(error?: CallgateError): void;
  /** The client fell back to SSE: replace the socket with a stream. */
  switchToStream(): void;
}

/** A connection kept up to the gateway: a socket (Link) or a stream (StreamLink). */
interface Channel {
  readonly state: "connecting" | "open" | "waiting" | "closed";
  /** Queues a frame; false when it cannot be sent now (or ever, on a stream). */
  send(frame: object): boolean;
  /** The set of calls followed changed: a stream reopens with the new set. */
  changed(): void;
  close(): void;
}

/**
 * backoffDelay is the wait before reconnecting after the nth failure in a
 * row. Full jitter: a random time up to min(max, base·2ⁿ). The first
 * reconnect after a working connection closed with 1001, 4008, 4001 or
 * 4002 is immediate; 4029, 4030 and 1013 wait at least base, and up to
 * 8·base or more.
 */
function backoffDelay(settings: Settings, n: number, action: CloseAction): number {
  const { reconnectBaseMs: base, reconnectMaxMs: cap } = settings;
  const full = (k: number) => Math.random() * Math.min(cap, base * 2 ** k);
  switch (action) {
    case "now":
    case "token":
      return n === 0 ? 0 : full(n);
    case "slow":
      return Math.min(cap, base + full(Math.max(n, 3)));
    default:
      return full(n);
  }
}

/**
 * Link is one socket to the gateway, kept up until closed: it
 * authenticates, paces what it sends, checks liveness with pings and
 * reconnects after every close, as the close code says.
 */
class Link implements Channel {
  state: "connecting" | "open" | "waiting" | "closed" = "connecting";
  private ws: WebSocketLike | undefined;
  /** The current socket got its welcome. */
  private welcomed = false;
  /** Connection attempts, for the URL. */
  private attempts = 0;
  /** Failed attempts since the last welcome, for the backoff. */
  private failures = 0;
  private tokenReason: TokenReason = "connect";
  private sentToken: string | undefined;
  private retryTimer: Timer | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private pongTimer: Timer | undefined;
  // Pacing: a token bucket of rate frames per second, at most burst.
  private outbox: string[] = [];
  private tokens = 0;
  private refilled = 0;
  private pumpTimer: Timer | undefined;
  private rate: number;
  private burst: number;

  constructor(
    private readonly client: ClientImpl,
    readonly name: string,
    private readonly path: string,
    private readonly owner: LinkOwner,
  ) {
    this.rate = client.settings.frameRate;
    this.burst = client.settings.frameBurst;
    void this.connect();
  }

  /** Queues a frame; false while the socket is not open (the owner resends on opened). */
  send(frame: object): boolean {
    if (this.state !== "open") return false;
    this.outbox.push(JSON.stringify(frame));
    this.pump();
    return true;
  }

  /** A socket's subscriptions are frames: nothing to do. */
  changed(): void {}

  /** Closes the socket for good. */
  close(): void {
    this.state = "closed";
    const ws = this.ws;
    this.drop();
    try {
      ws?.close(1000);
    } catch {
      // already closed
    }
  }

  private async connect(): Promise<void> {
    this.state = "connecting";
    const attempt = this.attempts++;
    let url: string;
    let token: string | undefined;
    try {
      url = socketUrl(await this.client.urlFor(attempt), this.path);
      token = await this.client.token(this.tokenReason);
    } catch (err) {
      if (this.state !== "connecting") return;
      const code = this.client.settings.getToken ? "token" : "connect";
      this.client.report(new CallgateError(code, `${this.name}: cannot connect: ${messageOf(err)}`, { terminal: false }));
      this.lost(1006, messageOf(err));
      return;
    }
    if (this.state !== "connecting") return; // closed meanwhile
    this.welcomed = false;
    this.client.emit({ type: "connecting", socket: this.name, url, attempt, transport: "websocket" });
    let ws: WebSocketLike;
    try {
      ws = new (this.client.settings.WebSocket as WebSocketConstructor)(url);
    } catch (err) {
      this.lost(1006, messageOf(err)); // e.g. a URL the WebSocket refuses; retried with backoff
      return;
    }
    this.ws = ws;
    this.expectFrame(ws); // a handshake nobody answers
    ws.addEventListener("open", () => ws === this.ws && this.opened(token));
    ws.addEventListener("message", (ev) => ws === this.ws && this.received(ev.data));
    ws.addEventListener("close", (ev) => ws === this.ws && this.lost(ev.code, ev.reason));
    // Browsers fire close after error; a failed connection may fire only error.
    ws.addEventListener("error", () => ws === this.ws && this.lost(1006, "connection failed"));
  }

  private opened(token: string | undefined): void {
    this.state = "open";
    this.outbox = [];
    this.tokens = this.burst;
    this.refilled = Date.now();
    if (token !== undefined) {
      // The first frame authenticates; the gateway reads the rest after it.
      this.sentToken = token;
      this.send({ type: "auth", token });
    }
    this.owner.opened();
    const { pingIntervalMs } = this.client.settings;
    if (pingIntervalMs > 0) {
      this.pingTimer = setInterval(() => this.pongTimer === undefined && this.sendRaw(PING), pingIntervalMs);
    }
  }

  private received(raw: unknown): void {
    // Anything from the gateway shows the connection is alive.
    clearTimeout(this.pongTimer);
    this.pongTimer = undefined;
    let f: ServerFrame;
    try {
      f = JSON.parse(typeof raw === "string" ? raw : String(raw)) as ServerFrame;
    } catch {
      return;
    }
    if (f === null || typeof f !== "object") return;
    switch (f.type) {
      case "welcome":
        this.failures = 0;
        this.welcomed = true;
        this.client.socketWelcomed();
        this.tokenReason = "connect";
        this.client.emit(openEvent(this.name, f, "websocket"));
        return;
      case "authenticated":
        this.client.emit({ type: "authenticated", socket: this.name, user: f.user, expiresAt: f.expires_at });
        return;
      case "token_expiring":
        void this.refreshToken();
        return;
      case "pong":
        return;
    }
    if (f.type === "error" && f.code === "auth_not_needed") return; // a gateway that checks no tokens
    this.owner.frame(f);
  }

  /** Answers token_expiring with a fresh token, if there is one. */
  private async refreshToken(): Promise<void> {
    const ws = this.ws;
    try {
      const token = await this.client.token("expiring");
      if (ws !== this.ws || token === undefined || token === this.sentToken) return;
      this.sentToken = token;
      this.send({ type: "auth", token });
    } catch (err) {
      this.client.report(new CallgateError("token", `${this.name}: cannot refresh the token: ${messageOf(err)}`, { terminal: false }));
    }
  }

  /** The socket is gone: decide from the close code whether and when to reconnect. */
  private lost(code: number, reason: string): void {
    if (this.state === "closed") return;
    const ws = this.ws;
    this.drop();
    try {
      ws?.close(1000); // for an abandoned socket; nothing after a close
    } catch {
      // already closed
    }
    let action = closeAction(code);
    if (action === "token") {
      if (this.client.settings.getToken) {
        this.tokenReason = code === 4002 ? "expired" : "rejected";
        this.client.forgetToken();
      } else {
        action = "stop"; // a fixed token cannot get better
      }
    }
    if (code === 4029) {
      this.rate = Math.max(1, this.rate / 2);
      this.burst = Math.max(1, Math.floor(this.burst / 2));
    }
    if (!this.welcomed && action !== "stop" && this.client.socketFailed()) {
      // WebSockets do not get through here: streams from now on.
      this.state = "closed";
      this.client.emit({ type: "closed", socket: this.name, code, reason, retryInMs: 0 });
      this.owner.closed();
      this.owner.switchToStream();
      return;
    }
    if (action === "stop") {
      this.state = "closed";
      this.client.emit({ type: "closed", socket: this.name, code, reason, retryInMs: undefined });
      const why = reason ? `${code} ${reason}` : String(code);
      this.owner.closed(new CallgateError("closed", `${this.name}: the gateway closed the socket (${why}); not reconnecting`, { terminal: true, closeCode: code }));
      return;
    }
    const delay = this.backoff(action);
    this.state = "waiting";
    this.client.emit({ type: "closed", socket: this.name, code, reason, retryInMs: delay });
    this.owner.closed();
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  /** backoff is the wait before the next attempt (see backoffDelay). */
  private backoff(action: CloseAction): number {
    return backoffDelay(this.client.settings, this.failures++, action);
  }

  /** Forgets the current socket and its timers. */
  private drop(): void {
    this.ws = undefined;
    this.outbox = [];
    clearTimeout(this.retryTimer);
    clearTimeout(this.pumpTimer);
    clearTimeout(this.pongTimer);
    clearInterval(this.pingTimer);
    this.retryTimer = this.pumpTimer = this.pongTimer = this.pingTimer = undefined;
  }

  private sendRaw(data: string): void {
    if (this.state !== "open") return;
    this.outbox.push(data);
    this.pump();
  }

  /** Sends what the bucket allows now, and schedules the rest. */
  private pump(): void {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilled) * this.rate) / 1000);
    this.refilled = now;
    const ws = this.ws;
    while (ws && this.outbox.length > 0 && this.tokens >= 1) {
      const data = this.outbox.shift() as string;
      this.tokens--;
      try {
        ws.send(data);
      } catch {
        return; // the close event follows
      }
      if (data === PING) this.expectFrame(ws);
    }
    if (this.outbox.length > 0 && this.pumpTimer === undefined) {
      const wait = Math.ceil(((1 - this.tokens) * 1000) / this.rate);
      this.pumpTimer = setTimeout(() => {
        this.pumpTimer = undefined;
        this.pump();
      }, wait);
    }
  }

  /** expectFrame gives up on ws if no frame comes within the timeout; any frame disarms it. */
  private expectFrame(ws: WebSocketLike): void {
    const { pongTimeoutMs } = this.client.settings;
    if (pongTimeoutMs <= 0 || this.pongTimer !== undefined) return;
    this.pongTimer = setTimeout(() => ws === this.ws && this.lost(1006, `no frame within ${pongTimeoutMs} ms`), pongTimeoutMs);
  }
}

function openEvent(socket: string, f: WelcomeFrame, transport: Transport): ConnectionEvent {
  return { type: "open", socket, instanceId: f.instance_id, connectionId: f.connection_id, user: f.user, transport };
}

/** The events a stream sends, by name; EventSource hands out only those listened to. */
const STREAM_EVENTS = [
  "welcome", "subscribed", "unsubscribed", "reset", "state", "token_expiring", "close",
  "status", "transcript", "transcript_correction", "interruption", "completed", "failed", "audio_available",
];

/**
 * StreamLink is one Server-Sent Events stream, kept up until closed. The
 * client reconnects it itself rather than leaving that to EventSource, so
 * that each new stream names the calls followed now, each from its
 * position, with a token fetched as for a socket: after any end or
 * error, the EventSource is closed and a new one opened, with the same
 * backoff as a socket's.
 */
class StreamLink implements Channel {
  state: "connecting" | "open" | "waiting" | "closed" = "connecting";
  private es: EventSourceLike | undefined;
  private attempts = 0;
  private failures = 0;
  private tokenReason: TokenReason = "connect";
  private retryTimer: Timer | undefined;
  private reopening = false;
  /** Counts attempts begun and dropped: an attempt that waited for its URL or token gives up if another began since. */
  private generation = 0;

  /** target returns the stream's path and query (no token); undefined while there is nothing to follow. */
  constructor(
    private readonly client: ClientImpl,
    readonly name: string,
    private readonly target: () => string | undefined,
    private readonly owner: LinkOwner,
  ) {
    void this.connect();
  }

  /** Nothing is sent on a stream: what it follows is in its URL. */
  send(): boolean {
    return false;
  }

  /** Reopens the stream with the calls followed now, once for all the changes of this turn. */
  changed(): void {
    if (this.reopening || this.state === "closed") return;
    this.reopening = true;
    queueMicrotask(() => {
      this.reopening = false;
      if (this.state === "closed") return;
      this.drop();
      void this.connect();
    });
  }

  close(): void {
    this.state = "closed";
    this.drop();
  }

  private async connect(): Promise<void> {
    this.state = "connecting";
    const generation = ++this.generation;
    const path = this.target();
    if (path === undefined) {
      this.state = "waiting"; // until changed
      return;
    }
    const attempt = this.attempts++;
    let url: string;
    let token: string | undefined;
    try {
      url = streamUrl(await this.client.urlFor(attempt), path);
      token = await this.client.token(this.tokenReason);
    } catch (err) {
      if (this.state !== "connecting" || generation !== this.generation) return;
      const code = this.client.settings.getToken ? "token" : "connect";
      this.client.report(new CallgateError(code, `${this.name}: cannot connect: ${messageOf(err)}`, { terminal: false }));
      this.lost(1006, messageOf(err));
      return;
    }
    if (this.state !== "connecting" || generation !== this.generation) return; // closed or reopened meanwhile
    this.client.emit({ type: "connecting", socket: this.name, url, attempt, transport: "sse" });
    const full = token === undefined ? url : `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
    let es: EventSourceLike;
    try {
      es = new (this.client.settings.EventSource as EventSourceConstructor)(full);
    } catch (err) {
      this.lost(1006, messageOf(err));
      return;
    }
    this.es = es;
    for (const name of STREAM_EVENTS) {
      es.addEventListener(name, (ev) => es === this.es && this.received(ev.data));
    }
    // A refusal (its status is not shown), a lost connection, or the end
    // of the body: reconnect ourselves.
    es.addEventListener("error", () => es === this.es && this.lost(1006, "stream failed"));
  }

  private received(raw: unknown): void {
    let f: ServerFrame | { type: "close"; code: number; reason: string };
    try {
      f = JSON.parse(String(raw)) as typeof f;
    } catch {
      return;
    }
    if (f === null || typeof f !== "object") return;
    switch (f.type) {
      case "welcome":
        this.state = "open";
        this.failures = 0;
        this.tokenReason = "connect";
        this.client.emit(openEvent(this.name, f, "sse"));
        this.owner.opened();
        return;
      case "token_expiring":
        // A stream's token cannot be refreshed: a new stream, with a
        // fresh token, continues from the positions.
        if (this.client.settings.getToken) {
          this.tokenReason = "expiring";
          this.changed();
        }
        return;
      case "close":
        this.lost(f.code, f.reason);
        return;
    }
    this.owner.frame(f);
  }

  /** The stream ended: decide from the close code whether and when to open another. */
  private lost(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.drop();
    // 4003 on a stream: a call was hidden from the token (its unsubscribed
    // came first and ended it); the others go on.
    let action = code === 4003 ? "now" : closeAction(code);
    if (action === "token") {
      if (this.client.settings.getToken) {
        this.tokenReason = code === 4002 ? "expired" : "rejected";
        this.client.forgetToken();
      } else {
        action = "stop";
      }
    }
    if (action === "stop") {
      this.state = "closed";
      this.client.emit({ type: "closed", socket: this.name, code, reason, retryInMs: undefined });
      const why = reason ? `${code} ${reason}` : String(code);
      this.owner.closed(new CallgateError("closed", `${this.name}: the gateway ended the stream (${why}); not reconnecting`, { terminal: true, closeCode: code }));
      return;
    }
    const delay = backoffDelay(this.client.settings, this.failures++, action);
    this.state = "waiting";
    this.client.emit({ type: "closed", socket: this.name, code, reason, retryInMs: delay });
    this.owner.closed();
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private drop(): void {
    const es = this.es;
    this.es = undefined;
    this.generation++;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    try {
      es?.close();
    } catch {
      // already closed
    }
  }
}

/** streamUrl is the URL of the stream at path on the gateway at base. */
function streamUrl(base: string, path: string): string {
  return socketUrl(base, path).replace(/^ws(s?):/i, "http$1:");
}

/** socketUrl is the URL of the socket at path on the gateway at base. */
function socketUrl(base: string, path: string): string {
  const loc = (globalThis as { location?: { href: string } }).location;
  if (loc && !/^[a-z][a-z0-9+.-]*:/i.test(base)) base = new URL(base, loc.href).href; // relative, in a page
  let u = base.replace(/^http(s?):/i, "ws$1:").replace(/\/+$/, "");
  if (u.endsWith(CALLS_PATH)) u = u.slice(0, -CALLS_PATH.length);
  return u + path;
}

// ---------------------------------------------------------------------------
// The client

/** ConnectOptions with the defaults filled in. */
interface Settings {
  url: ConnectOptions["url"];
  token: string | undefined;
  getToken: ConnectOptions["getToken"];
  WebSocket: WebSocketConstructor | undefined;
  EventSource: EventSourceConstructor | undefined;
  sseAfter: number;
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  frameRate: number;
  frameBurst: number;
}

class ClientImpl implements Client {
  readonly settings: Settings;
  private readonly onConnection: ConnectOptions["onConnection"];
  private readonly onError: ConnectOptions["onError"];
  private calls: Channel | undefined;
  /** The transport of new connections: websocket until the fallback. */
  private transport: Transport;
  /** WebSocket attempts in a row that failed before the welcome. */
  private socketFailures = 0;
  /** The calls of the current stream, in its URL's order, until each one's subscribed event. */
  private streamOrder: CallSub[] = [];
  /** Followed calls, by the identifier they were subscribed with. */
  private readonly subs = new Map<string, CallSub>();
  /** Requests on the call socket awaiting their reply: the subscription of a subscribe, null for an unsubscribe. */
  private readonly requests = new Map<string, CallSub | null>();
  private nextRequest = 1;
  private readonly topics = new Map<string, TopicSub>();
  private cachedToken: string | undefined;
  private fetching: Promise<string> | undefined;
  private closed = false;

  constructor(o: ConnectOptions) {
    const WS = o.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    const ES = o.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
    let transport = o.transport ?? "auto";
    if (transport === "auto" && !WS && ES) transport = "sse";
    if (transport === "sse" && !ES) throw new TypeError("callgate: no EventSource here; pass options.EventSource (in Node 20, the eventsource package's)");
    if (transport !== "sse" && !WS) throw new TypeError("callgate: no WebSocket here; pass options.WebSocket (in Node 20, the ws package's)");
    // auto falls back only where there is an EventSource.
    this.transport = transport === "sse" ? "sse" : "websocket";
    if (typeof o.url !== "function" && (o.url.length === 0 || o.url[0] === "")) throw new TypeError("callgate: options.url is empty");
    this.settings = {
      url: o.url,
      token: o.token,
      getToken: o.getToken,
      WebSocket: WS,
      EventSource: o.transport === "websocket" ? undefined : ES,
      sseAfter: Math.max(1, Math.floor(positive(o.sseAfter, 3))),
      reconnectBaseMs: positive(o.reconnect?.baseMs, 500),
      reconnectMaxMs: positive(o.reconnect?.maxMs, 30000),
      pingIntervalMs: o.keepalive?.intervalMs ?? 25000,
      pongTimeoutMs: o.keepalive?.timeoutMs ?? 10000,
      frameRate: positive(o.frameRate, 10),
      frameBurst: Math.max(1, Math.floor(positive(o.frameBurst, 20))),
    };
    this.cachedToken = o.token;
    this.onConnection = o.onConnection;
    this.onError = o.onError;
  }

  subscribe(call: string, options: SubscribeOptions = {}): Subscription {
    return this.add(call, options);
  }

  events(call: string, options: EventsOptions = {}): EventStream {
    return new Stream(this, call, options);
  }

  unsubscribe(call: string | Subscription): void {
    const sub = typeof call === "string" ? this.subs.get(call) : call;
    if (!(sub instanceof CallSub) || sub.state === "closed") return;
    if (sub.state === "active" || sub.request !== undefined) {
      this.request({ type: "unsubscribe", call: sub.call }, null);
    }
    this.end(sub);
    this.calls?.changed();
  }

  topic(name: string, options: TopicOptions = {}): TopicSubscription {
    this.checkOpen();
    if (this.topics.has(name)) throw new Error(`callgate: already following topic ${name}`);
    const t = new TopicSub(this, name, options);
    this.topics.set(name, t);
    return t;
  }

  close(): void {
    this.closed = true;
    this.calls?.close();
    this.calls = undefined;
    for (const sub of [...this.subs.values()]) this.end(sub);
    for (const t of [...this.topics.values()]) t.close();
  }

  // --- for Link, TopicSub and Stream

  /** add starts following call; see subscribe. */
  add(call: string, options: SubscribeOptions): CallSub {
    this.checkOpen();
    if (typeof call !== "string" || call.trim() === "") throw new TypeError("callgate: subscribe needs a call_sid or conversation_id");
    if (this.subs.has(call)) throw new Error(`callgate: already subscribed to ${call}`);
    const sub = new CallSub(this, call, options);
    this.subs.set(call, sub);
    if (this.calls === undefined) {
      this.calls = this.openCalls();
    } else {
      this.sendSubscribe(sub);
      this.calls.changed();
    }
    return sub;
  }

  /** openCalls opens the call socket, or the call stream after the fallback. */
  private openCalls(): Channel {
    const owner: LinkOwner = {
      opened: () => this.resubscribeAll(),
      frame: (f) => this.callFrame(f),
      closed: (err) => this.callsClosed(err),
      switchToStream: () => {
        if (this.closed || this.calls === undefined) return;
        this.calls = this.openCalls();
      },
    };
    if (this.transport === "sse") return new StreamLink(this, "calls", () => this.callsStreamPath(), owner);
    return new Link(this, "calls", CALLS_PATH, owner);
  }

  /** The call stream's path: every call followed, each from its position. */
  private callsStreamPath(): string | undefined {
    const subs = [...this.subs.values()].filter((s) => s.state !== "closed");
    this.streamOrder = subs;
    if (subs.length === 0) return undefined;
    const q = new URLSearchParams();
    for (const s of subs) q.append("call", s.call);
    const since = subs.map((s) => (s.eventId === undefined ? "" : s.epoch !== undefined ? `${s.epoch}-${s.eventId}` : s.eventId));
    if (since.some((p) => p !== "")) q.set("since", since.join(","));
    return "/sse/calls?" + q.toString();
  }

  /** A WebSocket attempt failed before its welcome; true once the client falls back to streams. */
  socketFailed(): boolean {
    if (this.transport === "websocket" && this.settings.EventSource && ++this.socketFailures >= this.settings.sseAfter) {
      this.transport = "sse";
    }
    return this.transport === "sse";
  }

  socketWelcomed(): void {
    this.socketFailures = 0;
  }

  /** The transport of new connections. */
  get currentTransport(): Transport {
    return this.transport;
  }

  /** The URL for connection attempt n. */
  async urlFor(attempt: number): Promise<string> {
    const u = this.settings.url;
    if (typeof u === "function") return await u(attempt);
    if (typeof u === "string") return u;
    return u[attempt % u.length] as string;
  }

  /** The token for a connection or a refresh; undefined without one. */
  token(reason: TokenReason): Promise<string | undefined> | string | undefined {
    const get = this.settings.getToken;
    if (!get) return this.settings.token;
    if (reason === "connect" && this.cachedToken !== undefined && !expiresSoon(this.cachedToken)) return this.cachedToken;
    this.fetching ??= Promise.resolve()
      .then(() => get(reason))
      .then((t) => {
        if (typeof t !== "string" || t === "") throw new Error("getToken gave no token");
        this.cachedToken = t;
        return t;
      })
      .finally(() => (this.fetching = undefined));
    return this.fetching;
  }

  /** The gateway refused the token: never reuse it. */
  forgetToken(): void {
    this.cachedToken = undefined;
  }

  emit(event: ConnectionEvent): void {
    safely(this.onConnection, event);
  }

  report(error: CallgateError): void {
    safely(this.onError, error);
  }

  forgetTopic(t: TopicSub): void {
    if (this.topics.get(t.name) === t) this.topics.delete(t.name);
  }

  /** Stops a subscription without telling the gateway; with an error, tells the app. */
  end(sub: CallSub, error?: CallgateError): void {
    if (this.subs.get(sub.call) === sub) this.subs.delete(sub.call);
    sub.close(error);
  }

  // --- the call socket

  private checkOpen(): void {
    if (this.closed) throw new Error("callgate: the client is closed");
  }

  /** Sends a request on the call socket; reply is what its reply is for. */
  private request(frame: Record<string, string>, reply: CallSub | null): string | undefined {
    const id = String(this.nextRequest++);
    if (!this.calls?.send({ ...frame, id })) return undefined;
    this.requests.set(id, reply);
    return id;
  }

  /** Subscribes sub on the open socket, from its position if it has one. */
  sendSubscribe(sub: CallSub): void {
    const frame: Record<string, string> = { type: "subscribe", call: sub.call };
    if (sub.eventId !== undefined) {
      frame["since"] = sub.eventId;
      if (sub.epoch !== undefined) frame["epoch"] = sub.epoch;
    }
    sub.request = this.request(frame, sub);
  }

  private resubscribeAll(): void {
    this.requests.clear();
    for (const sub of this.subs.values()) {
      sub.reconnected();
      this.sendSubscribe(sub);
    }
  }

  private callsClosed(error?: CallgateError): void {
    this.requests.clear();
    for (const sub of this.subs.values()) sub.disconnected();
    if (!error) return;
    this.calls = undefined; // a later subscribe tries again
    this.report(error);
    for (const sub of [...this.subs.values()]) this.end(sub, new CallgateError(error.code, error.message, { terminal: true, closeCode: error.closeCode ?? 0, call: sub.call }));
  }

  private callFrame(f: ServerFrame): void {
    switch (f.type) {
      case "event":
        this.bySid(f.call_sid)?.event(f);
        return;
      case "reset":
        this.bySid(f.call_sid)?.reset(f);
        return;
      case "subscribed": {
        // A stream's subscribed events carry no id: they come in the
        // order of its URL.
        const sub = f.id === undefined ? this.streamOrder.shift() : this.reply(f.id);
        if (!sub || sub.state === "closed") return;
        const other = this.bySid(f.call.call_sid);
        if (other && other !== sub) {
          // The gateway counts it as one subscription: an unsubscribe would end both.
          this.end(sub, new CallgateError("already_subscribed", `already following ${f.call.call_sid} as ${other.call}`, { terminal: true, call: sub.call }));
          return;
        }
        sub.subscribed(f);
        return;
      }
      case "unsubscribed":
        if (f.id === undefined && f.reason !== undefined) {
          // The gateway ended it: the call is hidden from this token now.
          const sub = this.bySid(f.call_sid);
          if (sub) this.end(sub, new CallgateError(f.reason, `the gateway ended the subscription to ${f.call_sid} (${f.reason})`, { terminal: true, call: sub.call }));
          return;
        }
        this.reply(f.id);
        return;
      case "error":
        this.callError(f);
        return;
    }
  }

  private callError(f: ErrorFrame): void {
    const sub = this.reply(f.id);
    if (sub === null) return; // an unsubscribe's: nothing is followed either way
    if (sub === undefined) {
      this.report(new CallgateError(f.code, f.message, { terminal: false }));
      return;
    }
    if (sub.state === "closed") return;
    if (f.code === "unavailable") {
      sub.retryLater(f);
      return;
    }
    // call_not_found and other refusals: subscribing again would get the same.
    this.end(sub, new CallgateError(f.code, f.message, { terminal: true, call: sub.call }));
  }

  /** Takes the request a reply answers: a subscription, null for an unsubscribe, undefined if none. */
  private reply(id: string | undefined): CallSub | null | undefined {
    if (id === undefined) return undefined;
    const r = this.requests.get(id);
    this.requests.delete(id);
    if (r) r.request = undefined;
    return r;
  }

  private bySid(callSid: string): CallSub | undefined {
    for (const sub of this.subs.values()) if (sub.callSid === callSid) return sub;
    return undefined;
  }
}

/**
 * CallSub is one followed call: where it stands, and what reaches the app.
 *
 * Position is (epoch, event_id). An event is delivered only if it comes
 * after the position: a higher event_id in the same epoch, or an epoch
 * the subscription has not left. An epoch missing on either side (older
 * gateways) counts as the same epoch. After recovered:false the next
 * event is taken as the new position, whatever its number.
 */
class CallSub implements Subscription {
  state: "subscribing" | "active" | "closed" = "subscribing";
  callSid: string | undefined;
  record: CallRecord | undefined;
  eventId: string | undefined;
  epoch: string | undefined;
  /** The id of the subscribe awaiting its reply. */
  request: string | undefined;
  /** Set by Stream: called when the subscription ends. */
  ended: (() => void) | undefined;
  /** Accept the next event as the new position (after recovered:false). */
  private rebase = false;
  /** Epochs this subscription has left: their events are old. */
  private readonly past = new Set<string>();
  private retries = 0;
  private retryTimer: Timer | undefined;

  constructor(
    private readonly client: ClientImpl,
    readonly call: string,
    private readonly o: SubscribeOptions,
  ) {
    if (o.history) this.eventId = "0";
    if (o.since !== undefined) {
      this.eventId = String(o.since);
      this.epoch = o.epoch;
    }
  }

  get position(): Position | undefined {
    return this.eventId === undefined ? undefined : { eventId: this.eventId, epoch: this.epoch };
  }

  unsubscribe(): void {
    this.client.unsubscribe(this);
  }

  reconnected(): void {
    clearTimeout(this.retryTimer);
    this.state = "subscribing";
  }

  disconnected(): void {
    this.request = undefined;
    if (this.state === "active") this.state = "subscribing";
  }

  subscribed(f: SubscribedFrame): void {
    this.state = "active";
    this.retries = 0;
    this.callSid = f.call.call_sid;
    if (f.event_id !== undefined) {
      // The events that follow continue after this position: the call's
      // last event for a live start, the since of a resume, or where the
      // store can go on from when it lost what this client had.
      if (this.epoch !== undefined && f.epoch !== undefined && f.epoch !== this.epoch) this.past.add(this.epoch);
      this.eventId = f.event_id;
      this.epoch = f.epoch;
    } else {
      // An older gateway: after recovered:false, take whatever comes next.
      if (f.recovered === false) this.rebase = true;
      if (this.eventId === undefined) {
        this.eventId = "0";
        this.epoch = f.epoch;
      }
    }
    this.setRecord(f.call);
    safely(this.o.onSubscribed, f.call, f.recovered);
    if (f.recovered === false) this.lost("history", f.epoch);
  }

  event(f: CallEvent): void {
    if (this.state === "closed" || !this.accept(f)) return;
    if (this.record) {
      const status: CallStatus | undefined =
        f.event === "status" ? f.data.status : f.event === "completed" ? "done" : f.event === "failed" ? "failed" : undefined;
      if (status !== undefined) {
        const { status: _old, ...rest } = this.record;
        this.setRecord({ ...rest, status, ...(f.conversation_id ? { conversation_id: f.conversation_id } : {}) });
      }
    }
    safely(this.o.onEvent, f);
  }

  reset(f: ResetFrame): void {
    if (this.state === "closed") return;
    if (this.epoch !== undefined && this.epoch !== f.epoch) this.past.add(this.epoch);
    this.epoch = f.epoch;
    this.eventId = f.event_id ?? "0";
    this.rebase = false;
    this.lost("reset", f.epoch);
  }

  /** The gateway could not subscribe for now: try again with backoff. */
  retryLater(f: ErrorFrame): void {
    const { reconnectBaseMs: base, reconnectMaxMs: cap } = this.client.settings;
    const delay = Math.random() * Math.min(cap, base * 2 ** this.retries++);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.state === "subscribing" && this.client.sendSubscribe(this), delay);
    safely(this.o.onError, new CallgateError(f.code, `${f.message} (retrying in ${Math.round(delay)} ms)`, { terminal: false, call: this.call }));
  }

  close(error?: CallgateError): void {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this.retryTimer);
    if (error) safely(this.o.onError, error);
    this.ended?.();
  }

  /** accept reports whether f comes after the position, and moves the position to it. */
  private accept(f: CallEvent): boolean {
    const epoch = f.epoch;
    if (!this.rebase && this.eventId !== undefined) {
      const same = epoch === undefined || this.epoch === undefined || epoch === this.epoch;
      if (same ? compareIds(f.event_id, this.eventId) <= 0 : this.past.has(epoch)) return false;
    }
    if (epoch !== undefined && this.epoch !== undefined && epoch !== this.epoch) this.past.add(this.epoch);
    if (epoch !== undefined) this.epoch = epoch;
    this.eventId = f.event_id;
    this.rebase = false;
    return true;
  }

  private setRecord(call: CallRecord): void {
    const before = this.record?.status;
    this.record = call;
    if (call.status !== before) safely(this.o.onStatus, call.status, call);
  }

  private lost(reason: LostInfo["reason"], epoch: string | undefined): void {
    safely(this.o.onLost, { callSid: this.callSid ?? this.call, reason, epoch: epoch ?? this.epoch });
  }
}

/** Stream is the async iterator of Client.events. */
class Stream implements EventStream {
  readonly subscription: Subscription;
  private readonly queue: CallEvent[] = [];
  private failure: CallgateError | undefined;
  private wake: (() => void) | undefined;

  constructor(client: ClientImpl, call: string, o: EventsOptions) {
    const sub = client.add(call, {
      ...o,
      onEvent: (ev) => {
        this.queue.push(ev);
        this.notify();
      },
      onError: (err) => {
        if (err.terminal) this.failure = err;
        o.onError?.(err);
      },
    });
    sub.ended = () => this.notify();
    this.subscription = sub;
  }

  [Symbol.asyncIterator](): EventStream {
    return this;
  }

  async next(): Promise<IteratorResult<CallEvent>> {
    for (;;) {
      const ev = this.queue.shift();
      if (ev) return { value: ev, done: false };
      if (this.failure) throw this.failure;
      if (this.subscription.state === "closed") return { value: undefined, done: true };
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async return(): Promise<IteratorResult<CallEvent>> {
    this.subscription.unsubscribe();
    this.queue.length = 0;
    return { value: undefined, done: true };
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** TopicSub is one followed topic, on its own socket. */
class TopicSub implements TopicSubscription {
  version = 0;
  epoch = "0";
  data: unknown = null;
  private link: Channel;

  constructor(
    private readonly client: ClientImpl,
    readonly name: string,
    private readonly o: TopicOptions,
  ) {
    this.link = this.open();
  }

  /** open opens the topic's socket, or its stream after the fallback. */
  private open(): Channel {
    const owner: LinkOwner = {
      opened: () => {},
      frame: (f) => this.frame(f),
      closed: (err) => {
        if (!err) return;
        this.client.forgetTopic(this);
        safely(this.o.onError, err);
      },
      switchToStream: () => {
        if (this.link.state === "closed") this.link = this.open();
      },
    };
    const path = "/" + encodeURIComponent(this.name);
    if (this.client.currentTransport === "sse") return new StreamLink(this.client, this.name, () => "/sse" + path, owner);
    return new Link(this.client, this.name, "/ws" + path, owner);
  }

  get state(): TopicSubscription["state"] {
    return this.link.state === "open" || this.link.state === "closed" ? this.link.state : "connecting";
  }

  close(): void {
    this.link.close();
    this.client.forgetTopic(this);
  }

  private frame(f: ServerFrame): void {
    const epoch = f.type === "state" ? (f.epoch ?? "0") : "";
    if (
      f.type === "state" &&
      f.topic === this.name &&
      (compareIds(epoch, this.epoch) > 0 || (epoch === this.epoch && f.version > this.version))
    ) {
      // Each connection starts from the current state: a version seen
      // already is dropped, so the app never goes back; a later epoch (the
      // store lost the state and counts again) is newer whatever its
      // version.
      this.version = f.version;
      this.epoch = epoch;
      this.data = f.data;
      safely(this.o.onState, f);
    } else if (f.type === "error") {
      safely(this.o.onError, new CallgateError(f.code, f.message, { terminal: false }));
    }
  }
}

// ---------------------------------------------------------------------------
// Helpers

/** compareIds compares two event_ids, decimal strings without leading zeros, as numbers. */
function compareIds(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** expiresSoon reports whether a JWT's exp is less than 10 s away; false if it cannot be read. */
function expiresSoon(jwt: string): boolean {
  try {
    const part = (jwt.split(".")[1] ?? "").replace(/-/g, "+").replace(/_/g, "/");
    const { exp } = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4))) as { exp?: unknown };
    return typeof exp === "number" && exp * 1000 < Date.now() + 10000;
  } catch {
    return false;
  }
}

function positive(v: number | undefined, fallback: number): number {
  return v !== undefined && v > 0 ? v : fallback;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * safely calls an application callback. What it throws is rethrown
 * outside the client's own work, so that the client's state stays whole.
 */
function safely<A extends unknown[]>(f: ((...args: A) => void) | undefined, ...args: A): void {
  if (!f) return;
  try {
    f(...args);
  } catch (err) {
    setTimeout(() => {
      throw err;
    });
  }
}
