package bridgelink

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

// DefaultMaxFrameBytes bounds one frame when Config.MaxFrameBytes is not set: 1 MiB, far above the
// largest frame the DLL builds (nanopb bounds every field), small enough that a corrupt length
// prefix cannot make the server allocate much.
const DefaultMaxFrameBytes = 1 << 20

// FastDecoder decodes a frame's bytes without reflection when it can; ok=false hands the bytes to
// proto.Unmarshal, which also produces the precise error for malformed input.
type FastDecoder func(raw []byte) (f *bridgev1.Frame, ok bool)

// FrameBuffer gives the buffer a frame of n bytes is read into (Config.FrameBuffer): any length, at
// least n of capacity or not (ReadRawInto then allocates).
type FrameBuffer func(n int) []byte

// ReadRaw reads one varint-length-delimited frame and returns its bytes (a fresh buffer the caller
// may keep). A frame over maxBytes is a *protodelim.SizeTooLargeError and nothing beyond its length
// prefix is read; a stream that ends between frames is io.EOF, inside one io.ErrUnexpectedEOF.
func ReadRaw(br *bufio.Reader, maxBytes int) ([]byte, error) {
	return ReadRawInto(br, maxBytes, nil)
}

// ReadRawInto is ReadRaw reading a frame of up to 64 KiB into a buffer from get (when not nil and
// it has the capacity), so a caller can recycle frame buffers; larger frames, and any frame when get
// is nil, get a fresh buffer as in ReadRaw.
func ReadRawInto(br *bufio.Reader, maxBytes int, get FrameBuffer) ([]byte, error) {
	size, err := binary.ReadUvarint(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, io.ErrUnexpectedEOF
		}
		// A deadline or reset keeps its identity through %w, so the caller still tells it from garbage.
		return nil, fmt.Errorf("frame length prefix: %w", err)
	}
	if size > uint64(maxBytes) {
		return nil, &protodelim.SizeTooLargeError{Size: size, MaxSize: uint64(maxBytes)}
	}
	// The buffer grows with the bytes that arrive (doubling from eagerBytes), so a prefix that
	// claims a large frame and then stalls costs what was sent, not what was claimed.
	n := int(size)
	var buf []byte
	if get != nil && n <= eagerBytes {
		buf = get(n)
	}
	if cap(buf) >= n {
		buf = buf[:n]
	} else {
		buf = make([]byte, min(n, eagerBytes))
	}
	for read := 0; ; {
		if _, err := io.ReadFull(br, buf[read:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		read = len(buf)
		if read == n {
			return buf, nil
		}
		buf = append(buf, make([]byte, min(n-read, read))...)
	}
}

// eagerBytes is how much of a frame ReadRaw allocates before any of its bytes arrived.
const eagerBytes = 64 << 10

// Decode turns a frame's bytes into a Frame, trying fast first when it is not nil.
func Decode(raw []byte, fast FastDecoder) (*bridgev1.Frame, error) {
	if fast != nil {
		if f, ok := fast(raw); ok {
			return f, nil
		}
	}
	f := &bridgev1.Frame{}
	if err := proto.Unmarshal(raw, f); err != nil {
		return nil, err
	}
	return f, nil
}

// ReadFrame reads and decodes one frame (ReadRaw, then Decode without a fast path).
func ReadFrame(br *bufio.Reader, maxBytes int) (*bridgev1.Frame, []byte, error) {
	raw, err := ReadRaw(br, maxBytes)
	if err != nil {
		return nil, nil, err
	}
	f, err := Decode(raw, nil)
	if err != nil {
		return nil, nil, err
	}
	return f, raw, nil
}

// BodyName is a frame body's name as the metrics label it (the oneof field name).
func BodyName(f *bridgev1.Frame) string {
	switch f.GetBody().(type) {
	case *bridgev1.Frame_Hello:
		return "hello"
	case *bridgev1.Frame_Welcome:
		return "welcome"
	case *bridgev1.Frame_Heartbeat:
		return "heartbeat"
	case *bridgev1.Frame_SymbolInfo:
		return "symbol_info"
	case *bridgev1.Frame_Ticks:
		return "ticks"
	case *bridgev1.Frame_OrderCommand:
		return "order_command"
	case *bridgev1.Frame_OrderResult:
		return "order_result"
	case *bridgev1.Frame_TradeTransaction:
		return "trade_transaction"
	case *bridgev1.Frame_Account:
		return "account"
	case *bridgev1.Frame_Positions:
		return "positions"
	case *bridgev1.Frame_Error:
		return "error"
	case *bridgev1.Frame_Challenge:
		return "challenge"
	case *bridgev1.Frame_TerminalCheck:
		return "terminal_check"
	case *bridgev1.Frame_HistoryRequest:
		return "history_request"
	case *bridgev1.Frame_HistoryData:
		return "history_data"
	case *bridgev1.Frame_TesterStep:
		return "tester_step"
	case *bridgev1.Frame_TesterDecision:
		return "tester_decision"
	case nil:
		return "none"
	}
	return "other"
}
