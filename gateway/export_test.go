package gateway

// ClientFrame is clientFrame, for the tests of package gateway_test.
var ClientFrame = clientFrame
