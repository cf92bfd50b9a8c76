package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// ServeHTTP upgrades the request to a WebSocket that follows calls, and
// serves it until it closes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.serve(w, r, nil)
}

// serve checks, upgrades and serves one connection; topic is nil for the
// call socket.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, topic *topicState) {
	if !s.enter(w) {
		return
	}
	upgraded := false
	defer func() {
		if !upgraded {
			s.wg.Done()
		}
	}()
	id, mustAuth, ok := s.checkRequest(w, r, topic, false)
	if !ok {
		return
	}
	c := &conn{
		srv:         s,
		id:          uuid.NewString(),
		user:        "anonymous",
		topic:       topic,
		connectedAt: time.Now(),
		slot:        s.nextSlot.Add(1),
		done:        make(chan struct{}),
		finished:    make(chan struct{}),
	}
	// Gorilla answers the handshake; the connection it returns is not
	// used (read.go reads, the flusher writes).
	if _, err := s.upgrader.Upgrade(hijacker{w, c}, r, upgradeHeader(w)); err != nil {
		if id != nil {
			s.release(id.User)
		}
		return // the upgrader has answered
	}
	if id != nil {
		c.counted = true
		c.setIdentity(*id)
	}
	c.requestID = w.Header().Get("X-Request-Id")
	s.mu.Lock()
	s.conns[c] = struct{}{}
	if s.draining {
		// Shutdown began during the upgrade, after it closed the
		// connections it found.
		c.closeWith(websocket.CloseGoingAway, "server shutting down")
	}
	s.mu.Unlock()
	s.metrics.connections.Add(1)
	// The connection gets a goroutine of its own and this one returns:
	// everything the HTTP server held for the request is freed.
	upgraded = true
	go c.run(mustAuth, r.URL.Path)
}

// upgradeHeader is what the 101 answer carries besides the handshake's own
// headers: the request id set on w, as every other answer has it. Gorilla
// writes only these on the hijacked connection, not w's headers.
func upgradeHeader(w http.ResponseWriter) http.Header {
	id := w.Header().Get("X-Request-Id")
	if id == "" {
		return nil
	}
	return http.Header{"X-Request-Id": {id}}
}

// enter counts a connection request in wg, unless the server is
// draining: then it answers 503 and returns false.
func (s *Server) enter(w http.ResponseWriter) bool {
	s.mu.Lock()
	draining := s.draining
	if !draining {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if draining {
		writeHTTPError(w, http.StatusServiceUnavailable, "shutting_down", "this instance is shutting down; connect to another")
	}
	return !draining
}

// checkRequest runs the checks every connection passes before it is
// accepted, socket or stream: the instance's connection limit, the token
// (stream: whether one is needed), a topic's org, and the user's limit.
// It returns the identity, whether the socket must still authenticate
// with its first frame, and false if it has answered a refusal. A user
// admitted is counted: the caller releases it if the connection does not
// start.
func (s *Server) checkRequest(w http.ResponseWriter, r *http.Request, topic *topicState, stream bool) (id *Identity, mustAuth, ok bool) {
	if s.metrics.connections.Load() >= int64(s.cfg.MaxConnections) {
		writeHTTPError(w, http.StatusServiceUnavailable, "too_many_connections", "this instance is at its connection limit; try another")
		return nil, false, false
	}
	if s.cfg.Authenticator != nil {
		if token := tokenFrom(r, stream); token != "" {
			ident, err := s.cfg.Authenticator.Authenticate(token)
			if err != nil {
				s.log.Info("connection refused: invalid token", "err", err)
				writeHTTPError(w, http.StatusUnauthorized, "invalid_token", "the token is invalid or expired")
				return nil, false, false
			}
			id = &ident
		} else if !s.cfg.AllowAnonymous {
			if stream {
				// A stream has no first frame to authenticate with.
				writeHTTPError(w, http.StatusUnauthorized, codeTokenRequired, "a token is required: ?token=, the "+StreamCookie+" cookie or Authorization: Bearer")
				return nil, false, false
			}
			mustAuth = true
		}
	}
	if topic != nil && !mustAuth && s.cfg.Authenticator != nil && !topic.mayUse(id) {
		writeHTTPError(w, http.StatusForbidden, "forbidden", "this topic is not readable with this token")
		return nil, false, false
	}
	if id != nil && !s.admit(id.User) {
		writeHTTPError(w, http.StatusTooManyRequests, "too_many_connections", "too many connections for this user")
		return nil, false, false
	}
	return id, mustAuth, true
}

func (s *Server) checkOrigin(r *http.Request) bool {
	if len(s.cfg.AllowedOrigins) == 0 {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(o, u.Scheme+"://"+u.Host) {
			return true
		}
	}
	return false
}

// upgradeError answers a request that could not be upgraded in the API's
// error format.
func upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	code := "bad_handshake"
	if status == http.StatusForbidden {
		code = "origin_not_allowed"
	}
	writeHTTPError(w, status, code, reason.Error())
}

func writeHTTPError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}
