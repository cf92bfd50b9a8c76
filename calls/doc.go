// Package calls keeps call records, resolves call identifiers, verifies and decodes webhooks, and publishes call events.
//
// # Files
//
//	record.go             the call record in Redis: statuses, saving, linking a
//	                      conversation, resolving identifiers; past 400 lines
//	                      because its Lua steps sit beside the Go that sends
//	                      them and reads their replies
//	keys.go               the Redis keys of a call, per Redis mode
//	events.go             publishing a call's events (through pubsub)
//	cache.go              the cache of calls addressed by live webhooks
//	signature.go          ElevenLabs webhook signatures
//	elevenlabs*.go        decoding ElevenLabs' live events and post-call webhooks
//	input.go, apiinput.go exact decoding of outside input and of the API's body
//	http.go, api.go       the API's and webhooks' routes and handlers
//	webhook*.go           the two webhook endpoints
//	errors.go             error codes and bodies
package calls
