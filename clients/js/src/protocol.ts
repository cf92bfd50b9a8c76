// The frames and records of the callgate WebSocket protocol, as the
// gateway sends them (docs/PROTOCOL.md is the reference).

/** A call's status. The gateway enforces no order between them. */
export type CallStatus = "initiated" | "in-progress" | "done" | "failed";

/** A call record: what `subscribed` carries and `GET /api/calls/:id` returns. */
export interface CallRecord {
  /** The call's key: the application's own identifier (`EL_…`, a Twilio `CA…`, a SIP call id). */
  call_sid: string;
  /** ElevenLabs' conversation id; absent until it is linked to the call. */
  conversation_id?: string;
  status: CallStatus;
  /** The tenant; absent if none. */
  org?: string;
  /** RFC 3339 in UTC. */
  created_at: string;
  /** RFC 3339 in UTC; moves when the status, conversation_id or org changes. */
  updated_at: string;
}

/** What every event frame carries besides its data. */
export interface EventFrameBase<Name extends string, Data> {
  type: "event";
  /** The event's number within its call (and epoch), a decimal string counting from "1". */
  event_id: string;
  /**
   * The numbering's epoch, a string of digits compared for equality only.
   * Absent from gateways that predate epochs.
   */
  epoch?: string;
  event: Name;
  call_sid: string;
  conversation_id?: string;
  /** When the gateway published the event, RFC 3339 in UTC. */
  time: string;
  data: Data;
}

/** `status`: the call's status changed. */
export type StatusEvent = EventFrameBase<"status", { status: CallStatus }>;

/** Data of a `transcript` event: one turn, or a tentative part of one. */
export interface TranscriptData {
  role: "agent" | "user";
  text: string;
  /** false only for a tentative user transcript, which a later one with the same role and source_event_id replaces. */
  final: boolean;
  /** ElevenLabs' event_id of the turn; absent if the forwarded event had none. */
  source_event_id?: number;
}

/** `transcript`: a turn of the conversation. Key lines by role and source_event_id. */
export type TranscriptEvent = EventFrameBase<"transcript", TranscriptData>;

/** `transcript_correction`: the agent's turn with this source_event_id was cut short; text replaces it. */
export type TranscriptCorrectionEvent = EventFrameBase<
  "transcript_correction",
  { role: "agent"; text: string; original_text: string; source_event_id?: number }
>;

/** `interruption`: the user interrupted the agent. */
export type InterruptionEvent = EventFrameBase<"interruption", { source_event_id: number }>;

/** `completed`: the post-call webhook arrived; the call is now `done`. */
export type CompletedEvent = EventFrameBase<
  "completed",
  {
    /** ElevenLabs' transcript, as sent. */
    transcript: unknown;
    /** ElevenLabs' analysis, as sent. */
    analysis: unknown;
    call_duration_secs?: number;
    termination_reason?: string;
  }
>;

/** `failed`: the call could not be placed; the call is now `failed`. */
export type FailedEvent = EventFrameBase<"failed", { reason: string; provider?: string }>;

/** `audio_available`: ElevenLabs sent the recording (not forwarded). */
export type AudioAvailableEvent = EventFrameBase<"audio_available", { audio_bytes: number }>;

/**
 * An event of a call. Switch on `event` to narrow `data`. A newer gateway
 * may send event names not listed here: keep a default branch.
 */
export type CallEvent =
  | StatusEvent
  | TranscriptEvent
  | TranscriptCorrectionEvent
  | InterruptionEvent
  | CompletedEvent
  | FailedEvent
  | AudioAvailableEvent;

/** A topic's state, as a `state` frame carries it. */
export interface TopicState {
  type: "state";
  topic: string;
  /** Counts the topic's changes from 1, within its epoch. */
  version: number;
  /**
   * Decimal digits: a new epoch starts when the gateway's store lost the
   * topic's state, and counts versions again; a later epoch is newer
   * whatever its version. Absent from gateways that predate epochs.
   */
  epoch?: string;
  /** The whole state, any JSON value. */
  data: unknown;
}

/** The first frame of every connection. */
export interface WelcomeFrame {
  type: "welcome";
  connection_id: string;
  /** The instance that holds the connection. */
  instance_id?: string;
  /** The token's sub, or "anonymous". */
  user: string;
}

/** The reply to a subscribe. */
export interface SubscribedFrame {
  type: "subscribed";
  id?: string;
  call: CallRecord;
  /** Present when the subscribe had since or history: whether every event after it follows. */
  recovered?: boolean;
  /**
   * The position the events that follow continue after: the call's last
   * event for a subscribe without since, the since of a resume, or where
   * the gateway's store can go on from when it lost what the client had
   * ("0" and "0" before the call's first event). Absent from gateways that
   * predate epochs.
   */
  epoch?: string;
  event_id?: string;
}

/**
 * Sent when a followed call's numbering went back (a new epoch, or the
 * gateway's store lost its last events): the events that follow continue
 * after (epoch, event_id); events received before may have been lost.
 */
export interface ResetFrame {
  type: "reset";
  call_sid: string;
  epoch: string;
  event_id: string;
  recovered: false;
}

/** An error reply; the connection stays open. */
export interface ErrorFrame {
  type: "error";
  id?: string;
  code: string;
  message: string;
}

/** Any frame the gateway sends. */
export type ServerFrame =
  | WelcomeFrame
  | SubscribedFrame
  | ResetFrame
  | ErrorFrame
  | CallEvent
  | TopicState
  /** reason "forbidden" (no id): the gateway ended the subscription itself. */
  | { type: "unsubscribed"; id?: string; call_sid: string; reason?: string }
  | { type: "pong"; id?: string }
  | { type: "authenticated"; user: string; expires_at?: string }
  | { type: "token_expiring"; expires_at: string };
