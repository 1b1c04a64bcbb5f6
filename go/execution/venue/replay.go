package venue

import "google.golang.org/protobuf/proto"

// Replayer is a venue that restores its own progress from the journal at start: the MT5 venue
// re-seeds its command ids and the last frame sequence it processed per bridge session.
type Replayer interface {
	ReplayRequest(msg proto.Message)
	ReplayResponse(key string, msg proto.Message)
}
