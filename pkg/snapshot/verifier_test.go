package snapshot_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

// TestVerifierPassesASnapshotThrough: a real snapshot comes out of a Verifier byte for byte,
// whatever the sizes of the reads, and ends with io.EOF, Err nil and the snapshot's sha256 and
// size.
func TestVerifierPassesASnapshotThrough(t *testing.T) {
	raw, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "good.db", map[string]string{"a": "1", "b": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	for name, r := range map[string]func() io.Reader{
		"whole reads":    func() io.Reader { return bytes.NewReader(raw) },
		"one byte reads": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(raw)) },
		"data with EOF":  func() io.Reader { return iotest.DataErrReader(bytes.NewReader(raw)) },
	} {
		t.Run(name, func(t *testing.T) {
			v := snapshot.NewVerifier(r())
			if err := v.Err(); err == nil {
				t.Fatal("Err before the stream was read: nil, want an error")
			}
			out, err := io.ReadAll(v)
			if err != nil || !bytes.Equal(out, raw) {
				t.Fatalf("read %d bytes (equal: %v), %v; want the snapshot's %d", len(out), bytes.Equal(out, raw), err, len(raw))
			}
			if v.Err() != nil || v.SHA256() != hex.EncodeToString(sum[:]) || v.Size() != int64(len(raw)) {
				t.Fatalf("after the stream: err %v, sha256 %s, size %d; want nil, %x, %d", v.Err(), v.SHA256(), v.Size(), sum, len(raw))
			}
		})
	}
}

// TestVerifierRefusesWhatIsNotAnIntactSnapshot: a stream with a byte changed, cut short, or
// shorter than a snapshot can be ends with an *InvalidError saying it is truncated or corrupt,
// never with io.EOF, and its last 32 bytes are never passed on; an error of the source is
// passed on as it is.
func TestVerifierRefusesWhatIsNotAnIntactSnapshot(t *testing.T) {
	raw, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "good.db", map[string]string{"a": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(raw)
	flipped[len(flipped)/2] ^= 0xFF
	for name, stream := range map[string][]byte{
		"one byte changed":         flipped,
		"cut at a block":           raw[:len(raw)-512],
		"cut in a block":           raw[:len(raw)-100],
		"its hash missing":         raw[:len(raw)-sha256.Size],
		"a hash alone":             raw[len(raw)-sha256.Size:],
		"shorter than its trailer": raw[:10],
		"empty":                    nil,
	} {
		t.Run(name, func(t *testing.T) {
			v := snapshot.NewVerifier(iotest.HalfReader(bytes.NewReader(stream)))
			out, err := io.ReadAll(v)
			if !snapshot.IsInvalid(err) || !strings.Contains(err.Error(), "truncated or corrupt") {
				t.Fatalf("read to the end: %v, want an InvalidError saying the stream is truncated or corrupt", err)
			}
			if !errors.Is(v.Err(), err) {
				t.Errorf("Err = %v, want the error the stream ended with", v.Err())
			}
			if held := max(len(stream)-sha256.Size, 0); len(out) > held {
				t.Errorf("passed on %d bytes of %d: the trailer went through before it was checked", len(out), len(stream))
			}
		})
	}

	cut := errors.New("connection reset")
	v := snapshot.NewVerifier(io.MultiReader(bytes.NewReader(raw[:4096]), iotest.ErrReader(cut)))
	if _, err := io.ReadAll(v); !errors.Is(err, cut) || snapshot.IsInvalid(err) {
		t.Fatalf("a source that fails: %v, want its error", err)
	}
}
