package etcdcluster

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Field numbers of etcdserverpb.SnapshotResponse.
const (
	snapshotHeaderField  = 1
	snapshotBlobField    = 3
	snapshotVersionField = 4
)

// snapshotChunk is one message of a member's snapshot stream (etcdserverpb.SnapshotResponse).
// snapshotCodec decodes every message of a stream into the same snapshotChunk, and its blob
// keeps its capacity from one message to the next: the stream allocates its buffer once, not
// 32 KiB per message, which made as much garbage as the snapshot is large and grew
// etcdaas-apiserver's RSS by the garbage collector's slack during a backup.
type snapshotChunk struct {
	header  *pb.ResponseHeader
	version string
	blob    []byte
}

// unmarshal decodes the SnapshotResponse in b into c, reusing c.blob's capacity.
func (c *snapshotChunk) unmarshal(b []byte) error {
	c.header, c.version, c.blob = nil, "", c.blob[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != snapshotHeaderField && num != snapshotBlobField && num != snapshotVersionField) {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case snapshotHeaderField:
			c.header = &pb.ResponseHeader{}
			if err := proto.Unmarshal(v, c.header); err != nil {
				return err
			}
		case snapshotBlobField:
			c.blob = append(c.blob[:0], v...)
		case snapshotVersionField:
			c.version = string(v)
		}
	}
	return nil
}

// snapshotReader reads the blobs of a snapshot stream's messages, in order, as one stream of
// bytes.
type snapshotReader struct {
	ctx    context.Context
	stream grpc.ClientStream
	chunk  snapshotChunk
	rest   []byte
	err    error
}

// Read copies what is left of the current message's blob, receiving the next message once it
// is consumed. It returns io.EOF after the last message, and the context's error once the
// stream was cancelled.
func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.receive()
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// receive receives the next message into r.chunk.
func (r *snapshotReader) receive() {
	if err := r.stream.RecvMsg(&r.chunk); err != nil {
		r.err = clientv3.ContextError(r.ctx, err)
		return
	}
	r.rest = r.chunk.blob
}

// openSnapshotStream starts a snapshot on cli's member and receives its first message, so that
// a member's refusal surfaces here, with the header and version it carries.
func openSnapshotStream(ctx context.Context, cli *clientv3.Client) (*snapshotReader, error) {
	stream, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return nil, clientv3.ContextError(ctx, err)
	}
	r := &snapshotReader{ctx: ctx, stream: stream}
	if r.receive(); r.err != nil {
		return nil, fmt.Errorf("receiving its first message: %w", r.err)
	}
	return r, nil
}
