// Package gateway serves client WebSocket connections: the call
// subscription protocol, each instance's local subscriptions, and the
// fan-out of bus messages to the sockets that follow them.
//
// It declares what it needs from the rest of the system (Bus, Resolver)
// and imports neither the Redis bus nor the call store.
package gateway
