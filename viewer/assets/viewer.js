// The live call viewer: follows one call, or one state topic, through the
// gateway that serves this page, with the callgate client, and shows what
// arrives. Everything reaches the DOM as text (textContent, text nodes):
// nothing from the network is parsed as HTML.
import { connect } from "./callgate.js";

const $ = (id) => document.getElementById(id);
const form = $("follow");
const kindField = $("kind");
const nameField = $("name");
const tokenField = $("token");
const historyField = $("history");
const stopButton = $("stop");

const emptyHelp = $("empty").textContent;

/** The client of what is followed now, or undefined. */
let client;
/** Per follow: turns by "role source_event_id", the last agent turn, counters. */
let turns = new Map();
let lastAgent;
let subscribedCount = 0;
let eventCount = 0;
let instance = "";

/** el makes an element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (k === "class") n.className = v;
    else if (k === "data") Object.assign(n.dataset, v);
    else n.setAttribute(k, v);
  }
  n.append(...children);
  return n;
}

function show(id, text, attrs) {
  const n = $(id);
  n.textContent = text;
  Object.assign(n.dataset, attrs ?? {});
}

/** log adds a line to the activity list; kind is for styling (and tests). */
function log(kind, text) {
  const list = $("activity");
  list.append(el("li", { data: { kind } }, el("time", {}, new Date().toLocaleTimeString()), " ", text));
  while (list.children.length > 200) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

/** alertUser shows something the user must not miss (events lost, a refusal). */
function alertUser(kind, text) {
  $("alerts").append(el("li", { data: { kind } }, text));
}

/** closeMeaning says in words what a close that is not retried means here. */
function closeMeaning(code) {
  switch (code) {
    case 4001:
      return "the gateway refused the token, or needs one: enter a valid token and follow again";
    case 4002:
      return "the token expired: enter a fresh one and follow again";
    case 4003:
      return "forbidden for this token";
    case 1008:
    case 1009:
      return "the gateway refused what the page sent";
  }
  return "the gateway will not take this connection back";
}

function onConnection(ev) {
  switch (ev.type) {
    case "connecting":
      if ($("conn").dataset.state === "reconnecting") show("conn", `reconnecting… (attempt ${ev.attempt + 1})`, { state: "reconnecting" });
      else show("conn", "connecting…", { state: "connecting" });
      log("connecting", `connecting to ${ev.url} (attempt ${ev.attempt + 1})`);
      return;
    case "authenticated":
      show("user", ev.user);
      log("authenticated", `token accepted for ${ev.user}` + (ev.expiresAt ? `, valid until ${ev.expiresAt}` : ""));
      return;
    case "open":
      instance = ev.instanceId ?? "(unnamed)";
      show("conn", `connected to ${instance}`, { state: "open" });
      show("instance", instance);
      show("user", ev.user);
      log("open", `connected to ${instance} as ${ev.user} (connection ${ev.connectionId})`);
      return;
    case "closed": {
      const why = `${ev.code}${ev.reason ? ` ${ev.reason}` : ""}`;
      if (instance) show("instance", `${instance} (lost)`);
      if (ev.retryInMs !== undefined) {
        const ms = Math.round(ev.retryInMs);
        show("conn", `reconnecting in ${ms} ms (closed: ${why})`, { state: "reconnecting" });
        log("closed", `connection to ${instance || "the gateway"} closed (${why}); reconnecting in ${ms} ms`);
        if ($("sub").dataset.state === "active") show("sub", "waiting to resume…", { state: "subscribing" });
      } else {
        show("conn", `closed (${ev.code}): not reconnecting`, { state: "closed" });
        log("closed", `connection closed (${why}); not reconnecting`);
        alertUser("closed", `The gateway closed the socket (${ev.code}): ${closeMeaning(ev.code)}.`);
      }
      return;
    }
  }
}

function onError(err) {
  // Errors that belong to no subscription; a terminal close is told by
  // onConnection already.
  if (err.code !== "closed") log("error", `${err.code}: ${err.message}`);
}

// --- a call

function followCall(name, history) {
  const sub = client.subscribe(name, {
    history,
    onSubscribed(record, recovered) {
      subscribedCount++;
      showRecord(record);
      if (subscribedCount === 1) {
        const how = history ? (recovered === false ? "stored history incomplete" : "stored history replayed") : "from its next event";
        show("sub", `following (${how})`, { state: "active", recovered: String(recovered ?? "") });
        log("subscribed", `following ${record.call_sid} (${record.status}), ${how}`);
        return;
      }
      const after = sub.position ? `after event ${sub.position.eventId}` : "";
      const what = recovered === false ? "some events may be missing (recovered:false)" : "nothing missed";
      show("sub", `resumed on ${instance}: ${what}`, { state: "active", recovered: String(recovered ?? "") });
      log("resumed", `resumed on ${instance} ${after}: ${what}`);
    },
    onStatus(status, record) {
      showRecord(record);
      // The first status comes with the subscription, which logs it.
      if (subscribedCount > 0) log("status", `status ${status}`);
    },
    onLost(info) {
      if (info.reason === "reset") {
        alertUser("reset", `Reset: the call's numbering restarted (epoch ${info.epoch ?? "?"}) because Redis lost its state. Events before may be missing; what follows is complete.`);
        log("reset", `reset to epoch ${info.epoch ?? "?"}: earlier events may be missing`);
      } else {
        alertUser("lost", "recovered:false: the gateway's stored history did not reach back far enough, so some events of this call are missing here. What it still had follows.");
        log("lost", "recovered:false: some events may be missing");
      }
    },
    onError(err) {
      if (!err.terminal) {
        log("error", `${err.code}: ${err.message}`);
        return;
      }
      if (err.code === "closed") {
        // The socket's close is shown and explained already.
        show("sub", `ended: the socket closed (${err.closeCode})`, { state: "closed" });
        return;
      }
      const text = err.code === "call_not_found" ? `no call ${name} (or not one this token may see)` : `${err.code}: ${err.message}`;
      show("sub", `ended: ${text}`, { state: "closed" });
      alertUser(err.code, `Not following ${name}: ${text}.`);
      log("ended", `subscription ended: ${text}`);
    },
    onEvent: showEvent,
  });
  show("sub", `subscribing to ${name}…`, { state: "subscribing" });
  $("empty").textContent = "No events yet.";
}

function showRecord(record) {
  show("call-sid", record.call_sid);
  if (record.conversation_id) show("conversation", record.conversation_id);
  show("call-status", record.status, { status: record.status });
}

function showEvent(ev) {
  eventCount++;
  $("empty").hidden = true;
  show("event-count", String(eventCount));
  show("position", `event ${ev.event_id}` + (ev.epoch ? ` · epoch ${ev.epoch}` : ""));
  if (ev.conversation_id) show("conversation", ev.conversation_id);
  $("events").append(
    el("li", { data: { eventId: ev.event_id, epoch: ev.epoch ?? "", event: ev.event } },
      el("span", { class: "id" }, `#${ev.event_id}`), " ", el("span", { class: "name" }, ev.event), " ", summary(ev)),
  );
  const d = ev.data ?? {};
  switch (ev.event) {
    case "transcript":
      turn(d.role, d.source_event_id, d.text, d.final === false);
      break;
    case "transcript_correction":
      correction(d.source_event_id, d.text, d.original_text);
      break;
    case "interruption":
      if (lastAgent) {
        lastAgent.classList.add("interrupted");
        note(lastAgent, "interrupted");
      }
      marker("interruption", "The caller interrupted");
      break;
    case "completed": {
      const parts = [d.call_duration_secs ? `${d.call_duration_secs} s` : "", d.termination_reason ?? ""].filter(Boolean);
      marker("completed", `Call completed${parts.length ? `: ${parts.join(", ")}` : ""}`);
      break;
    }
    case "failed":
      marker("failed", `Call failed: ${d.reason ?? "no reason given"}`);
      break;
  }
}

function summary(ev) {
  const d = ev.data ?? {};
  switch (ev.event) {
    case "status":
      return d.status;
    case "transcript":
      return `${d.role}${d.final === false ? " (tentative)" : ""}: ${d.text}`;
    case "transcript_correction":
      return `${d.role}: ${d.text}`;
    case "interruption":
      return `source event ${d.source_event_id}`;
    case "audio_available":
      return `${d.audio_bytes} bytes`;
    case "failed":
      return d.reason ?? "";
    case "completed":
      return d.termination_reason ?? "";
  }
  return JSON.stringify(d).slice(0, 200);
}

/** turn shows a transcript turn; a later one with the same role and source_event_id replaces it in place. */
function turn(role, sourceId, text, tentative) {
  const key = sourceId === undefined ? undefined : `${role} ${sourceId}`;
  let li = key && turns.get(key);
  if (li && tentative && li.dataset.final === "true") return; // a late tentative never undoes the final text
  if (!li) {
    li = el("li", { class: `turn ${role}`, data: { role, key: key ?? "" } },
      el("span", { class: "who" }, role === "agent" ? "Agent" : "Caller"), " ",
      el("span", { class: "text" }));
    $("transcript").append(li);
    if (key) turns.set(key, li);
  }
  li.querySelector(".text").textContent = text;
  li.dataset.final = String(!tentative);
  li.classList.toggle("tentative", tentative);
  li.querySelector(".note.speaking")?.remove();
  if (tentative) note(li, "speaking…", "speaking");
  if (role === "agent") lastAgent = li;
}

/** correction replaces an agent turn's text with what was actually said. */
function correction(sourceId, text, original) {
  const key = sourceId === undefined ? undefined : `agent ${sourceId}`;
  if (!key || !turns.has(key)) turn("agent", sourceId, text, false);
  const li = key ? turns.get(key) : lastAgent;
  li.querySelector(".text").textContent = text;
  li.classList.add("corrected");
  li.querySelector(".original")?.remove();
  if (original && original !== text) {
    li.append(el("del", { class: "original" }, el("span", { class: "sr" }, "originally: "), original));
  }
  note(li, "corrected");
}

/** note adds a tag such as "corrected" to a turn, once. */
function note(li, text, cls) {
  if ([...li.querySelectorAll(".note")].some((n) => n.dataset.note === text)) return;
  const tag = el("span", { class: `note ${cls ?? ""}`.trim(), data: { note: text } },
    el("span", { class: "sr" }, " ("), text, el("span", { class: "sr" }, ")"));
  li.querySelector(".text").after(tag);
}

function marker(kind, text) {
  $("transcript").append(el("li", { class: "marker", data: { kind } }, text));
}

// --- a topic

function followTopic(name) {
  client.topic(name, {
    onState(state) {
      const epoch = state.epoch ? ` · epoch ${state.epoch}` : "";
      show("topic-version", `${state.topic}: version ${state.version}${epoch}`, { version: String(state.version) });
      $("topic-state").textContent = JSON.stringify(state.data, null, 2);
      log("state", `${state.topic} version ${state.version}`);
    },
    onError(err) {
      log("error", `${err.code}: ${err.message}`);
      if (err.terminal && err.code !== "closed") alertUser(err.code, `Not following topic ${name}: ${err.message}.`);
    },
  });
}

// --- the form

function stop() {
  client?.close();
  client = undefined;
  stopButton.disabled = true;
  if ($("conn").dataset.state !== "idle") {
    show("conn", "stopped", { state: "idle" });
    show("sub", "–", { state: "idle" });
    log("stopped", "stopped following");
  }
}

function clear() {
  turns = new Map();
  lastAgent = undefined;
  subscribedCount = eventCount = 0;
  instance = "";
  for (const id of ["transcript", "events", "alerts", "activity"]) $(id).replaceChildren();
  for (const id of ["instance", "user", "call-sid", "conversation", "call-status", "position"]) show(id, "–");
  show("event-count", "0");
  show("topic-version", "no state yet");
  $("topic-state").textContent = "";
  $("empty").textContent = emptyHelp;
  $("empty").hidden = false;
}

function follow() {
  const kind = kindField.value;
  const name = nameField.value.trim();
  if (!name) return;
  stop();
  clear();
  const token = tokenField.value.trim();
  client = connect({
    // The gateway that serves this page: one level up from /viewer/.
    url: new URL("../", location.href).href,
    ...(token ? { token } : {}),
    onConnection,
    onError,
  });
  stopButton.disabled = false;
  $("call-view").hidden = kind !== "call";
  $("topic-view").hidden = kind !== "topic";
  if (kind === "topic") followTopic(name);
  else followCall(name, historyField.checked);
  // Bookmarkable: what is followed goes in the address, the token never.
  window.history.replaceState(null, "", `?${new URLSearchParams({ [kind]: name })}`);
}

function kindChanged() {
  const topic = kindField.value === "topic";
  $("name-label").textContent = topic ? "topic" : "call_sid or conversation_id";
  if (topic) nameField.setAttribute("list", "topics");
  else nameField.removeAttribute("list");
  historyField.disabled = topic;
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  follow();
});
stopButton.addEventListener("click", stop);
kindField.addEventListener("change", kindChanged);

const params = new URLSearchParams(location.search);
for (const kind of ["call", "topic"]) {
  if (params.get(kind)) {
    kindField.value = kind;
    nameField.value = params.get(kind);
  }
}
kindChanged();
// A bookmarked call or topic is followed at once, anonymously; where the
// gateway needs a token it says so, and Follow with a token tries again.
if (nameField.value) follow();
