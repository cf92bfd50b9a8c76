package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/callgate/callgate/auth"
	"github.com/callgate/callgate/calls"
	"github.com/callgate/callgate/gateway"
	"github.com/callgate/callgate/internal/httpapi"
	"github.com/callgate/callgate/internal/slots"
	"github.com/callgate/callgate/pubsub"
	"github.com/callgate/callgate/topics"
	"github.com/callgate/callgate/viewer"
)

// viewerPath is where --viewer serves the live call viewer.
const viewerPath = "/viewer/"

// app is one running gateway instance: its Redis, bus, sockets and HTTP
// server, wired together.
type app struct {
	cfg    config
	log    *slog.Logger
	mini   *miniredis.Miniredis // the embedded Redis in --dev, else nil
	rdb    redis.UniversalClient
	mode   redisMode
	keys   calls.Keys
	bus    *pubsub.Bus
	gw     *gateway.Server
	events *calls.Events
	calls  *calls.Handler
	m      *metrics
	// verifier checks client tokens; nil without token configuration.
	verifier *auth.Verifier
	http     *http.Server
	ln       net.Listener
	// debug serves pprof profiles on debugLn with --debug-addr, else
	// nil; debugDone is closed when serveDebug returns.
	debug     *http.Server
	debugLn   net.Listener
	debugDone chan struct{}

	busCtx    context.Context
	busCancel context.CancelFunc
	busDone   chan struct{}
	closeOnce sync.Once
}

// newApp connects to Redis, checks it answers, and listens on cfg.Addr
// (and cfg.DebugAddr). It starts nothing else.
func newApp(ctx context.Context, cfg config, log *slog.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log}
	var err error
	if a.rdb, a.mode, a.mini, err = connectRedis(ctx, cfg); err != nil {
		return nil, err
	}
	keys := calls.Keys{Prefix: cfg.RedisPrefix}
	if a.mode == redisCluster {
		ps := slots.NewPartitions(cfg.RedisClusterPartitions)
		keys.Partitions = &ps
	}
	a.keys = keys
	sharded := a.mode == redisCluster
	store := calls.NewStore(a.rdb, keys, cfg.CallTTL)
	topicStore := topics.NewStore(a.rdb, cfg.RedisPrefix, cfg.Topics, sharded)
	var topicCfg []gateway.Topic
	for _, name := range cfg.Topics {
		topicCfg = append(topicCfg, gateway.Topic{
			Name: name, Channel: topicStore.Channel(name),
			FramePrefix: topics.FramePrefix(name), Org: cfg.topicOrg(name),
		})
	}
	var authn gateway.Authenticator
	if cfg.hasTokenVerifier() {
		secrets := make([][]byte, len(cfg.JWTSecrets))
		for i, s := range cfg.JWTSecrets {
			secrets[i] = []byte(s)
		}
		v, err := auth.New(ctx, auth.Config{
			Secrets: secrets, PublicKeyFile: cfg.JWTPublicKeyFile, JWKSURL: cfg.JWTJWKSURL,
			Audience: cfg.JWTAudience, Issuer: cfg.JWTIssuer, Logger: log,
		})
		if err != nil {
			a.closeRedis()
			return nil, fmt.Errorf("client token verification: %w", err)
		}
		a.verifier = v
		authn = authenticator{v}
	}
	if cfg.AllowAnonymous {
		log.Warn("--allow-anonymous: sockets without a token are accepted as anonymous")
	}
	a.bus = pubsub.New(a.rdb, pubsub.Config{
		Logger: log, Linger: cfg.UnsubscribeLinger, Sharded: sharded,
		WaitReplicas: cfg.RedisWaitReplicas, WaitTimeout: cfg.RedisWaitTimeout,
		// Calls on lost channels hold their live events until the
		// catch-up after the subscription is back.
		OnLost:      func(channels []string) { a.gw.Lost(channels) },
		OnReconnect: func(ctx context.Context, channels []string) { a.gw.Resync(ctx, channels) },
	})
	a.m = newMetrics(a)
	a.gw = gateway.NewServer(gateway.Config{
		Bus:              a.bus,
		Resolver:         resolver(store, keys),
		History:          history{a.bus, keys},
		Logger:           log,
		InstanceID:       cfg.InstanceID,
		AllowedOrigins:   cfg.AllowedOrigins,
		MaxFrameBytes:    cfg.MaxFrameBytes,
		SendQueue:        cfg.SendQueue,
		SendQueueBytes:   cfg.SendQueueBytes,
		MaxSubscriptions: cfg.MaxSubscriptions,
		PongWait:         cfg.PongWait,
		Topics:           topicCfg,
		TopicSource:      topicSource{topicStore},
		PublishLatency:   a.m.observeLatency,

		Authenticator:         authn,
		AllowAnonymous:        cfg.AllowAnonymous,
		Tenancy:               !cfg.Dev || authn != nil,
		AuthTimeout:           cfg.AuthTimeout,
		TokenWarning:          cfg.TokenWarning,
		MaxConnections:        cfg.MaxConnections,
		MaxConnectionsPerUser: cfg.MaxConnsPerUser,
		FrameRate:             cfg.MaxFrameRate,
		FrameBurst:            cfg.MaxFrameBurst,
	})
	a.events = calls.NewEvents(a.bus, keys, calls.Retention{
		Call: cfg.CallTTL, Dedup: cfg.DedupTTL,
		HistoryEvents: cfg.HistoryEvents, HistoryAfterEnd: cfg.HistoryTTL,
	})
	var verifier *calls.Verifier
	if len(cfg.WebhookSecrets) > 0 {
		verifier = &calls.Verifier{MaxAge: cfg.WebhookMaxAge, MaxSkew: cfg.WebhookMaxSkew}
		for _, s := range cfg.WebhookSecrets {
			verifier.Secrets = append(verifier.Secrets, []byte(s))
		}
	}
	handler := calls.NewHandler(calls.HandlerConfig{
		Store:             store,
		Events:            a.events,
		Verifier:          verifier,
		MaxBody:           cfg.MaxBody,
		MaxPostCallBody:   cfg.MaxPostCallBody,
		WebhookBodyBudget: cfg.WebhookBodyBudget,
		Logger:            log,
		CallCacheTTL:      cfg.CallCacheTTL,
	})
	a.calls = handler

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = httpError
	// A short, safe request id from the load balancer is kept, else one
	// is made (see requestID).
	e.Use(middleware.Recover(), requestID, a.m.countWebhooks)
	e.GET("/metrics", a.m.handler())
	e.GET("/ws/calls/transcriptions", echo.WrapHandler(a.gw))
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", a.ready)
	for _, name := range cfg.Topics {
		e.GET("/ws/"+name, echo.WrapHandler(a.gw.TopicHandler(name)))
		e.GET("/sse/"+name, echo.WrapHandler(a.gw.TopicStreamHandler(name)))
	}
	// Server-Sent Events: one call by either identifier, or several as
	// call parameters.
	e.GET("/sse/calls", func(c echo.Context) error {
		a.gw.ServeCallStream(c.Response(), c.Request())
		return nil
	})
	e.GET("/sse/calls/:id", func(c echo.Context) error {
		id, err := url.PathUnescape(c.Param("id"))
		if err != nil {
			return httpapi.Fail(c, http.StatusNotFound, "call_not_found", "no call has that call_sid or conversation_id")
		}
		a.gw.ServeCallStream(c.Response(), c.Request(), id)
		return nil
	})
	if cfg.Viewer {
		// A static page: it authenticates its sockets as any client does.
		v := echo.WrapHandler(viewer.Handler(viewerPath))
		e.Any(strings.TrimSuffix(viewerPath, "/"), v)
		e.Any(viewerPath+"*", v)
	}
	api := e.Group("/api", httpapi.RequireAPIKey(cfg.APIKeys))
	handler.Register(e, api)
	topics.NewHandler(topicStore, cfg.MaxTopicBytes, log).Register(api)

	a.http = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		// Large post-call bodies need time; sockets clear these
		// deadlines when they upgrade.
		ReadTimeout:  cfg.HTTPReadTimeout,
		WriteTimeout: cfg.HTTPWriteTimeout,
		IdleTimeout:  cfg.HTTPIdleTimeout,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	a.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		a.closeRedis()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if cfg.DebugAddr != "" {
		if a.debug, a.debugLn, err = listenDebug(cfg.DebugAddr); err != nil {
			a.ln.Close()
			a.closeRedis()
			return nil, err
		}
		a.debugDone = make(chan struct{})
	}
	a.busCtx, a.busCancel = context.WithCancel(context.Background())
	a.busDone = make(chan struct{})
	return a, nil
}

// httpError answers every error echo raises itself (unknown route, wrong
// method) in the API's error format.
func httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, status := "internal_error", http.StatusInternalServerError
	msg := "internal error"
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		msg = strings.ToLower(http.StatusText(status))
		switch status {
		case http.StatusNotFound:
			code = "not_found"
		case http.StatusMethodNotAllowed:
			code = "method_not_allowed"
		default:
			code = strings.ReplaceAll(msg, " ", "_")
		}
	}
	_ = httpapi.Fail(c, status, code, msg)
}

func (a *app) ready(c echo.Context) error {
	if a.gw.Draining() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "draining"})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := pingRedis(ctx, a.rdb); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "redis unreachable"})
	}
	if !a.bus.Healthy() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "redis subscriptions down"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// addr is the address the instance listens on.
func (a *app) addr() string { return a.ln.Addr().String() }

// serve runs the bus and the HTTP server until shutdown.
func (a *app) serve() error {
	go func() {
		defer close(a.busDone)
		if err := a.bus.Run(a.busCtx, a.gw.Deliver); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, pubsub.ErrClosed) {
			a.log.Error("bus stopped", "err", err)
		}
	}()
	if a.debug != nil {
		go a.serveDebug()
	}
	a.log.Info("callgate listening", "addr", a.addr(), "dev", a.cfg.Dev)
	if err := a.http.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// shutdown closes every socket with 1001 and waits for them, then stops
// accepting and lets running requests finish, all until ctx ends; then it
// stops the bus, the pprof server and Redis, in that order.
func (a *app) shutdown(ctx context.Context) error {
	var err error
	a.closeOnce.Do(func() {
		// The gateway drains first, while the HTTP server still
		// answers: /readyz says draining and new sockets and streams
		// are refused, so that a load balancer takes the instance out
		// while its sockets close. http.Server.Shutdown would close
		// the listener at once, and does not wait for hijacked sockets
		// anyway.
		gerr := a.gw.Shutdown(ctx)
		herr := a.http.Shutdown(ctx)
		a.busCancel()
		a.bus.Close()
		select {
		case <-a.busDone:
		case <-ctx.Done():
		}
		a.stopDebug(ctx)
		a.closeRedis()
		err = errors.Join(herr, gerr)
	})
	return err
}

func (a *app) closeRedis() {
	if a.verifier != nil {
		a.verifier.Close()
	}
	if a.rdb != nil {
		a.rdb.Close()
	}
	if a.mini != nil {
		a.mini.Close()
	}
}
