package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
)

// minSize is the size of the smallest snapshot: one 512-byte block of database and its
// digest.
const minSize = 512 + hashSize

// validSize reports whether size can be that of an etcd snapshot with its integrity hash: a
// database of whole 512-byte blocks followed by its sha256.
func validSize(size int64) bool {
	return size >= minSize && size%512 == hashSize
}

// errNotChecked is Verifier.Err before the stream has been read to its end.
var errNotChecked = errors.New("the snapshot stream was not read to its end: its integrity hash was not checked")

// Verifier passes an etcd snapshot stream through while checking it, without holding more
// than one buffer of it: it keeps the last 32 bytes read back as the trailer, hashes the rest
// as the database, and at the end of the stream compares the database's sha256 with the
// trailer. Only a stream that passes gets its trailer passed on and ends with io.EOF; one that
// is shorter than a snapshot can be, not of a snapshot's size, or whose digest does not match
// ends with an *InvalidError instead, its trailer never passed on, so that whatever the reader
// writes to fails rather than completing a truncated or corrupt snapshot.
type Verifier struct {
	r io.Reader
	// buf[start:end] was read from r and not passed on yet: the held-back trailer and what
	// precedes it.
	buf        []byte
	start, end int
	db, whole  hash.Hash
	passed     int64
	// eof is set once r ended, checked once the trailer matched; err is the error the
	// stream ends with.
	eof, checked bool
	err          error
}

// NewVerifier returns a Verifier reading the snapshot stream r.
func NewVerifier(r io.Reader) *Verifier {
	return &Verifier{r: r, buf: make([]byte, copyBuffer+hashSize), db: sha256.New(), whole: sha256.New()}
}

// Read implements io.Reader: the stream's bytes, the last 32 only once they are checked.
func (v *Verifier) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		held := v.end - v.start
		switch {
		case v.checked && held == 0:
			return 0, io.EOF
		case v.checked:
			return v.pass(p, held, false), nil
		case held > hashSize:
			return v.pass(p, held-hashSize, true), nil
		case v.err != nil:
			return 0, v.err
		case v.eof:
			// Everything before the trailer is passed on and hashed: check it.
			v.err = v.checkTrailer()
			v.checked = v.err == nil
		default:
			v.fill()
		}
	}
}

// fill reads more of the stream behind the held-back bytes.
func (v *Verifier) fill() {
	v.end = copy(v.buf, v.buf[v.start:v.end])
	v.start = 0
	n, err := v.r.Read(v.buf[v.end:])
	v.end += n
	switch {
	case err == io.EOF:
		v.eof = true
	case err != nil:
		v.err = err
	}
}

// pass copies up to max held bytes to p, hashing them into the database's digest when db.
func (v *Verifier) pass(p []byte, max int, db bool) int {
	n := copy(p[:min(len(p), max)], v.buf[v.start:])
	if db {
		v.db.Write(p[:n])
	}
	v.whole.Write(p[:n])
	v.passed += int64(n)
	v.start += n
	return n
}

// checkTrailer checks, at the end of the stream, once all but the held-back trailer is passed
// on, the stream's size and that the trailer is the database's sha256.
func (v *Verifier) checkTrailer() error {
	size := v.passed + int64(v.end-v.start)
	if !validSize(size) {
		return invalid("the snapshot stream is truncated or corrupt: %d bytes, and an etcd snapshot with an integrity hash is at least %d bytes, "+
			"a multiple of 512 plus a 32-byte sha256", size, minSize)
	}
	trailer := v.buf[v.start:v.end]
	if got := v.db.Sum(nil); !bytes.Equal(got, trailer) {
		return invalid("the snapshot's integrity hash does not match its content (sha256 %x recorded, %x computed): it is truncated or corrupt", trailer, got)
	}
	return nil
}

// Err returns nil once the whole stream was read and checked, the error it ended with
// otherwise (an *InvalidError for a stream that is not an intact snapshot).
func (v *Verifier) Err() error {
	switch {
	case v.checked:
		return nil
	case v.err != nil:
		return v.err
	}
	return errNotChecked
}

// SHA256 returns the hex sha256 of the bytes passed on: of the whole snapshot, trailer
// included, once Err is nil.
func (v *Verifier) SHA256() string { return hex.EncodeToString(v.whole.Sum(nil)) }

// Size returns the number of bytes passed on: the snapshot's size once Err is nil.
func (v *Verifier) Size() int64 { return v.passed }
