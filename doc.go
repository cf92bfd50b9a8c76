// Package callgate is a horizontally scalable WebSocket gateway for
// voice-call events: browsers subscribe to a call on any instance, webhooks
// arrive at any instance, and Redis carries each event to the instances
// whose clients follow the call. The command is cmd/callgate; this package
// holds only repository-wide tests.
package callgate
