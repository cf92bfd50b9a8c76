// Package calls keeps call records, resolves call identifiers, verifies and decodes webhooks, and publishes call events.
package calls
