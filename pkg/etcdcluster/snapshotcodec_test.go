package etcdcluster

import (
	"bytes"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// recordingPool records the capacity of every buffer it hands out.
type recordingPool struct {
	mem.BufferPool
	caps []int
}

func (p *recordingPool) Get(length int) *[]byte {
	b := p.BufferPool.Get(length)
	p.caps = append(p.caps, cap(*b))
	return b
}

// TestSnapshotCodecGathersChunksInSmallBuffers: a snapshot message as a member sends it (32 KiB
// of data) arriving in 16 KiB HTTP/2 frames unmarshals to the same message, gathered in a
// buffer of the 64 KiB tier rather than gRPC's default 1 MiB one.
func TestSnapshotCodecGathersChunksInSmallBuffers(t *testing.T) {
	proto := encoding.GetCodecV2(grpcproto.Name)
	sent := &etcdserverpb.SnapshotResponse{RemainingBytes: 7 << 20, Blob: bytes.Repeat([]byte("0123456789abcdef"), 2048)}
	wire, err := proto.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	whole := wire.Materialize()
	wire.Free()
	var frames mem.BufferSlice
	for len(whole) > 0 {
		n := min(len(whole), 16<<10)
		frames = append(frames, mem.SliceBuffer(whole[:n]))
		whole = whole[n:]
	}
	if len(frames) < 3 {
		t.Fatalf("the message came in %d frames, want it split", len(frames))
	}
	pool := &recordingPool{BufferPool: snapshotBufferPool}
	got := &etcdserverpb.SnapshotResponse{}
	if err := (snapshotCodec{proto, pool}).Unmarshal(frames, got); err != nil {
		t.Fatal(err)
	}
	if got.RemainingBytes != sent.RemainingBytes || !bytes.Equal(got.Blob, sent.Blob) {
		t.Fatalf("unmarshalled %d bytes, %d remaining; want the %d bytes sent, %d remaining", len(got.Blob), got.RemainingBytes, len(sent.Blob), sent.RemainingBytes)
	}
	if len(pool.caps) != 1 || pool.caps[0] > 64<<10 {
		t.Fatalf("buffers of capacities %v gathered the message, want one of at most 64 KiB", pool.caps)
	}
}

// TestSnapshotChunkReusesItsBuffer: the messages of a snapshot stream decode into one
// snapshotChunk as the proto codec would decode them, the blob in the same buffer each time.
func TestSnapshotChunkReusesItsBuffer(t *testing.T) {
	proto := encoding.GetCodecV2(grpcproto.Name)
	messages := []*etcdserverpb.SnapshotResponse{
		{Header: &etcdserverpb.ResponseHeader{Revision: 42, MemberId: 7}, RemainingBytes: 64 << 10, Blob: bytes.Repeat([]byte("a"), 32<<10), Version: "3.7.3"},
		{RemainingBytes: 32 << 10, Blob: bytes.Repeat([]byte("b"), 32<<10)},
		{Blob: []byte("sha256")},
	}
	var chunk snapshotChunk
	var first *byte
	for i, sent := range messages {
		wire, err := proto.Marshal(sent)
		if err != nil {
			t.Fatal(err)
		}
		if err := (snapshotCodec{proto, snapshotBufferPool}).Unmarshal(wire, &chunk); err != nil {
			t.Fatal(err)
		}
		wire.Free()
		if !bytes.Equal(chunk.blob, sent.Blob) || chunk.version != sent.Version ||
			(sent.Header == nil) != (chunk.header == nil) || (sent.Header != nil && chunk.header.Revision != sent.Header.Revision) {
			t.Fatalf("message %d decoded to header %v, version %q, %d bytes; sent %v", i, chunk.header, chunk.version, len(chunk.blob), sent)
		}
		if i == 0 {
			first = &chunk.blob[0]
		} else if &chunk.blob[0] != first {
			t.Errorf("message %d was decoded into a new buffer", i)
		}
	}
	if err := chunk.unmarshal([]byte{0x1a, 0x05, 'x'}); err == nil {
		t.Error("a truncated blob decoded without an error")
	}
}
