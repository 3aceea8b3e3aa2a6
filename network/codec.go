package network

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Codec turns values of type T into payloads and back. The typed helpers
// (Handle, Call, Serve) take one, so that call sites handle values, not
// bytes. Implementations must be safe for concurrent use.
type Codec[T any] interface {
	Marshal(v T) ([]byte, error)
	Unmarshal(payload []byte) (T, error)
}

// Raw returns the codec of raw payloads: a value is its bytes, unchanged.
func Raw() Codec[[]byte] { return rawCodec{} }

type rawCodec struct{}

func (rawCodec) Marshal(v []byte) ([]byte, error)   { return v, nil }
func (rawCodec) Unmarshal(b []byte) ([]byte, error) { return b, nil }

// Proto returns the codec of a protocol buffer message type, in its binary
// wire format. T is the message struct and the values are pointers to it:
//
//	codec := network.Proto[pb.SearchRequest]() // a Codec[*pb.SearchRequest]
func Proto[T any, PT interface {
	*T
	proto.Message
}]() Codec[PT] {
	return protoCodec[T, PT]{}
}

type protoCodec[T any, PT interface {
	*T
	proto.Message
}] struct{}

func (protoCodec[T, PT]) Marshal(v PT) ([]byte, error) {
	b, err := proto.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("protobuf marshal: %w", err)
	}
	return b, nil
}

func (protoCodec[T, PT]) Unmarshal(b []byte) (PT, error) {
	v := PT(new(T))
	if err := proto.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("protobuf unmarshal: %w", err)
	}
	return v, nil
}
