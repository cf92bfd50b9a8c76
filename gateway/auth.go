package gateway

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes of authentication and limits.
const (
	// CloseAuthFailed: no valid token in time, or a frame before auth.
	CloseAuthFailed = 4001
	// CloseTokenExpired: the token expired and no fresh one came.
	CloseTokenExpired = 4002
	// CloseForbidden: the token may not use this socket (a topic of
	// another org), or a fresh token names another user.
	CloseForbidden = 4003
	// CloseRateLimited: more client frames than the rate limit allows.
	CloseRateLimited = 4029
	// CloseTooManyConnections: the user has too many open connections.
	CloseTooManyConnections = 4030
)

// StreamCookie is the cookie a stream's token may come in: EventSource
// cannot set headers, and a cookie keeps the token out of the URL.
const StreamCookie = "callgate_token"

// tokenFrom finds a token in the request: the Authorization header or
// the token query parameter (browsers cannot set headers), and for a
// stream the StreamCookie cookie.
func tokenFrom(r *http.Request, stream bool) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	if t := r.URL.Query().Get("token"); t != "" || !stream {
		return t
	}
	if ck, err := r.Cookie(StreamCookie); err == nil {
		return ck.Value
	}
	return ""
}

// mayUse reports whether identity id (nil: anonymous) may open topic t's
// socket.
func (t *topicState) mayUse(id *Identity) bool {
	return t.Org == "" || id != nil && id.Org == t.Org
}

// admit counts a connection of user against the per-user limit; false if
// the user is at the limit. Anonymous connections are not counted.
func (s *Server) admit(user string) bool {
	if user == "" {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxConnectionsPerUser > 0 && s.users[user] >= s.cfg.MaxConnectionsPerUser {
		return false
	}
	s.users[user]++
	return true
}

func (s *Server) release(user string) {
	if user == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[user]--; s.users[user] <= 0 {
		delete(s.users, user)
	}
}

// setIdentity makes id the connection's identity. Call scheduleExpiry
// once the frames that must precede token_expiring are queued.
func (c *conn) setIdentity(id Identity) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	c.identity = &id
	c.user = id.User
}

// scheduleExpiry (re)arms the token_expiring warning and the close at the
// identity's expiry. Safe from any goroutine.
func (c *conn) scheduleExpiry() {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.warnTimer != nil {
		c.warnTimer.Stop()
		c.expireTimer.Stop()
	}
	if c.identity == nil || c.identity.Expires.IsZero() {
		return
	}
	id := *c.identity
	until := time.Until(id.Expires)
	c.warnTimer = time.AfterFunc(max(0, until-c.srv.cfg.TokenWarning), func() {
		c.enqueue(encode(tokenExpiringFrame{Type: "token_expiring", ExpiresAt: id.Expires.UTC()}))
	})
	c.expireTimer = time.AfterFunc(until, func() {
		c.closeWith(CloseTokenExpired, "token expired: send a fresh auth frame before expiry")
	})
}

// principal returns the connection's user ("anonymous" until it has an
// identity) and whether it has an identity.
func (c *conn) principal() (user string, identified bool) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	return c.user, c.identity != nil
}

// org is the connection's tenant; "" when anonymous or none.
func (c *conn) org() string {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.identity == nil {
		return ""
	}
	return c.identity.Org
}

func (c *conn) stopAuthTimers() {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.warnTimer != nil {
		c.warnTimer.Stop()
		c.expireTimer.Stop()
	}
}

// awaitAuth reads the first frame, which must be an auth frame with a
// valid token, within AuthTimeout. It runs before anything else reads.
func (c *conn) awaitAuth() bool {
	cfg := &c.srv.cfg
	c.ws.SetReadLimit(cfg.MaxFrameBytes)
	_ = c.ws.SetReadDeadline(time.Now().Add(cfg.AuthTimeout))
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			c.closeWith(CloseAuthFailed, "authentication timeout: send {\"type\":\"auth\",\"token\":…} first")
		}
		return false
	}
	ok := false
	c.aside(func() {
		f, ferr := decodeFrame(data)
		if typ != websocket.TextMessage || ferr != nil || f.Type != typeAuth {
			c.closeWith(CloseAuthFailed, "authentication required: the first frame must be {\"type\":\"auth\",\"token\":…}")
			return
		}
		ok = c.authenticate(f.Token, true)
	})
	return ok
}

// authenticate verifies a token from an auth frame; first says whether it
// is the connection's first. A later token must name the same user.
func (c *conn) authenticate(token string, first bool) bool {
	id, err := c.srv.cfg.Authenticator.Authenticate(token)
	if err != nil {
		c.logger().Info("authentication failed", "err", err)
		c.closeWith(CloseAuthFailed, "invalid token")
		return false
	}
	if !first {
		if user, _ := c.principal(); user != id.User {
			c.closeWith(CloseForbidden, "a fresh token must be for the same user")
			return false
		}
		before := c.org()
		c.setIdentity(id)
		c.reply(authenticatedFrame{Type: "authenticated", User: id.User, ExpiresAt: expiry(id)})
		c.scheduleExpiry()
		if id.Org != before {
			return c.recheck(&id)
		}
		return true
	}
	if t := c.topic; t != nil && !t.mayUse(&id) {
		c.closeWith(CloseForbidden, "this topic is not readable with this token")
		return false
	}
	if !c.srv.admit(id.User) {
		c.closeWith(CloseTooManyConnections, "too many connections for this user")
		return false
	}
	c.counted = true
	c.setIdentity(id)
	c.reply(authenticatedFrame{Type: "authenticated", User: id.User, ExpiresAt: expiry(id)})
	if c.srv.cfg.Authenticator != nil && c.welcomed {
		c.scheduleExpiry() // an anonymous socket that authenticated later
	}
	return true
}

// recheck checks every subscription of c, and its topic, against its new
// identity id, whose org changed: what it may no longer see ends (calls
// with an unsubscribed frame, a topic socket with 4003). It runs where
// client frames are handled, which owns c.subs. It reports whether the
// connection goes on.
func (c *conn) recheck(id *Identity) bool {
	if t := c.topic; t != nil {
		if !t.mayUse(id) {
			c.closeWith(CloseForbidden, "this topic is not readable with this token")
			return false
		}
		return true
	}
	for _, sub := range c.subs {
		c.srv.hub.recheck(sub.channel, c)
	}
	return true
}

func expiry(id Identity) *time.Time {
	if id.Expires.IsZero() {
		return nil
	}
	t := id.Expires.UTC()
	return &t
}
