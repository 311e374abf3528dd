// Package shimwire encodes and decodes the plexus.v1 messages the shim sends
// and receives, with a minimal wire-format codec of its own (wire.go).
//
// The shim is exec'd for every pod ADD and DEL, so its start-up time is paid
// on every pod. The generated code pulls in protobuf's reflection runtime,
// which measurably slows the exec (docs/benchmarks.md).
// The agent uses the generated code; shimwire_test.go checks that both sides
// agree byte for byte and field for field, so plexus.proto stays the contract.
package shimwire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// MaxMessageSize bounds one framed message in either direction. A CNI config
// or result is a few KiB; anything near this size is a bug or an attack.
const MaxMessageSize = 8 << 20

// APIVersion1 is plexus.v1.APIVersion.API_VERSION_1.
const APIVersion1 = 1

// Verb values of plexus.v1.Verb.
const (
	VerbAdd    = 1
	VerbDel    = 2
	VerbCheck  = 3
	VerbStatus = 4
	VerbGC     = 5
)

// Hello is plexus.v1.Hello.
type Hello struct {
	APIVersion  uint64
	ShimVersion string
}

// HelloReply is plexus.v1.HelloReply.
type HelloReply struct {
	APIVersion   uint64
	AgentVersion string
	Error        *Error
}

// CNIRequest is plexus.v1.CNIRequest.
type CNIRequest struct {
	Verb        uint64
	ContainerID string
	Netns       string
	Ifname      string
	Args        string
	Path        string
	Config      []byte
}

// CNIResponse is plexus.v1.CNIResponse.
type CNIResponse struct {
	Result []byte
	Error  *Error
}

// Error is plexus.v1.Error.
type Error struct {
	Code    uint64
	Msg     string
	Details string
}

// MarshalHello encodes h in protobuf wire format.
func MarshalHello(h *Hello) []byte {
	var b []byte
	b = appendVarint(b, 1, h.APIVersion)
	b = appendString(b, 2, h.ShimVersion)
	return b
}

// MarshalCNIRequest encodes r in protobuf wire format.
func MarshalCNIRequest(r *CNIRequest) []byte {
	b := make([]byte, 0, 64+len(r.Config)+len(r.Args)+len(r.Path)+len(r.Netns))
	b = appendVarint(b, 1, r.Verb)
	b = appendString(b, 2, r.ContainerID)
	b = appendString(b, 3, r.Netns)
	b = appendString(b, 4, r.Ifname)
	b = appendString(b, 5, r.Args)
	b = appendString(b, 6, r.Path)
	if len(r.Config) > 0 {
		b = appendTag(b, 7, bytesType)
		b = appendLenBytes(b, r.Config)
	}
	return b
}

// UnmarshalHelloReply decodes a plexus.v1.HelloReply.
func UnmarshalHelloReply(b []byte) (*HelloReply, error) {
	r := &HelloReply{}
	err := walk(b, func(num fieldNumber, typ wireType, v uint64, raw []byte) error {
		switch {
		case num == 1 && typ == varintType:
			r.APIVersion = uint64(uint32(v)) // an int32 enum: truncated as protobuf does
		case num == 2 && typ == bytesType:
			r.AgentVersion = string(raw)
		case num == 3 && typ == bytesType:
			// A repeated message field merges into the one before it.
			if r.Error == nil {
				r.Error = &Error{}
			}
			return unmarshalError(r.Error, raw)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode HelloReply: %w", err)
	}
	return r, nil
}

// UnmarshalCNIResponse decodes a plexus.v1.CNIResponse.
func UnmarshalCNIResponse(b []byte) (*CNIResponse, error) {
	r := &CNIResponse{}
	err := walk(b, func(num fieldNumber, typ wireType, v uint64, raw []byte) error {
		switch {
		case num == 1 && typ == bytesType:
			r.Result = append([]byte(nil), raw...)
		case num == 2 && typ == bytesType:
			if r.Error == nil {
				r.Error = &Error{}
			}
			return unmarshalError(r.Error, raw)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode CNIResponse: %w", err)
	}
	return r, nil
}

// unmarshalError decodes an Error into e, keeping fields the input lacks.
func unmarshalError(e *Error, b []byte) error {
	err := walk(b, func(num fieldNumber, typ wireType, v uint64, raw []byte) error {
		switch {
		case num == 1 && typ == varintType:
			e.Code = uint64(uint32(v))
		case num == 2 && typ == bytesType:
			e.Msg = string(raw)
		case num == 3 && typ == bytesType:
			e.Details = string(raw)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("decode Error: %w", err)
	}
	return nil
}

// walk calls fn for every field of a message; unknown fields are skipped as
// protobuf requires, so a newer agent can add fields.
func walk(b []byte, fn func(num fieldNumber, typ wireType, v uint64, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return err
		}
		b = b[n:]
		v, raw, n, err := consumeValue(num, typ, b)
		if err != nil {
			return err
		}
		b = b[n:]
		if err := fn(num, typ, v, raw); err != nil {
			return err
		}
	}
	return nil
}

func appendVarint(b []byte, num fieldNumber, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendVarintRaw(appendTag(b, num, varintType), v)
}

func appendString(b []byte, num fieldNumber, s string) []byte {
	if s == "" {
		return b
	}
	b = appendTag(b, num, bytesType)
	return append(appendVarintRaw(b, uint64(len(s))), s...)
}

// AppendFrame appends msg prefixed by its length as a varint, the framing
// of google.golang.org/protobuf/encoding/protodelim.
func AppendFrame(b, msg []byte) ([]byte, error) {
	if len(msg) > MaxMessageSize {
		return b, fmt.Errorf("message of %d bytes exceeds the %d byte limit", len(msg), MaxMessageSize)
	}
	return append(appendVarintRaw(b, uint64(len(msg))), msg...), nil
}

// WriteFrame writes msg as one frame (see AppendFrame).
func WriteFrame(w io.Writer, msg []byte) error {
	frame, err := AppendFrame(make([]byte, 0, len(msg)+binaryVarintLen), msg)
	if err != nil {
		return err
	}
	_, err = w.Write(frame)
	return err
}

const binaryVarintLen = 10

// ErrFrameTooLarge is returned by ReadFrame for a length over MaxMessageSize.
var ErrFrameTooLarge = errors.New("frame exceeds the message size limit")

// ReadFrame reads one varint-length-prefixed message.
func ReadFrame(r *bufio.Reader) ([]byte, error) {
	var n uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return nil, errors.New("frame length varint overflows")
		}
		c, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	if n > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read frame body: %w", err)
	}
	return buf, nil
}
