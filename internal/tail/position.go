package tail

import (
	"errors"
	"strconv"
	"strings"
)

// Position is a place in a call's events: an event_id within an epoch.
type Position struct {
	// Epoch is the numbering the event_id belongs to: decimal digits, ""
	// when not known (the call's current epoch) and "0" for frames of a
	// gateway that sends no epoch.
	Epoch string
	// EventID is the last event_id had; 0 is before the first event.
	EventID int64
}

// ParsePosition reads "57" (event_id 57 of the call's current epoch) or
// "1764466799123:57" (event_id 57 of epoch 1764466799123), as readable
// lines show them; a leading '#' is allowed.
func ParsePosition(s string) (Position, error) {
	s = strings.TrimPrefix(s, "#")
	epoch, id, hasEpoch := strings.Cut(s, ":")
	if !hasEpoch {
		epoch, id = "", s
	}
	if hasEpoch && !isDigits(epoch) {
		return Position{}, errors.New("the epoch before ':' must be decimal digits")
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || !isDigits(id) {
		return Position{}, errors.New("want an event_id (57) or epoch:event_id (1764466799123:57)")
	}
	return Position{Epoch: epoch, EventID: n}, nil
}

// String is the position as ParsePosition reads it, the epoch left out
// when it is unknown or 0.
func (p Position) String() string {
	id := strconv.FormatInt(p.EventID, 10)
	if p.Epoch == "" || p.Epoch == "0" {
		return id
	}
	return p.Epoch + ":" + id
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
