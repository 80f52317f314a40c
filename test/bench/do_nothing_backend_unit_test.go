package bench

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// TestDoNothingAnswers checks the do-nothing backend's answers without a control plane: a
// create gets 201 and the object, a LIST over 128 KiB goes gzipped only to a client that
// accepts gzip and uncompresses to the list, a small LIST is never gzipped, and the backup
// stream is exactly its length.
func TestDoNothingAnswers(t *testing.T) {
	object := []byte("the object")
	d, err := newDoNothing(runtime.ContentTypeProtobuf, object, 3*streamChunk+5)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	defer srv.Close()
	prefix := srv.URL + "/apis/" + nullGroup + "/" + nullVersion + "/namespaces/ns/etcdinstances"
	do := func(method, url, acceptEncoding string, body io.Reader) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept-Encoding", acceptEncoding) // set: the transport leaves the body as sent
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, got
	}
	resp, got := do(http.MethodPost, prefix, "", strings.NewReader("a body to discard"))
	if resp.StatusCode != http.StatusCreated || !bytes.Equal(got, object) || resp.Header.Get("Content-Type") != runtime.ContentTypeProtobuf {
		t.Errorf("create: %s %q (%s), want 201 and the object in protobuf", resp.Status, got, resp.Header.Get("Content-Type"))
	}
	if resp, _ = do(http.MethodGet, prefix, "gzip", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("LIST before the list is set: %s, want 503", resp.Status)
	}
	large := bytes.Repeat([]byte("0123456789"), gzipAbove/10+1)
	if err := d.setList(large); err != nil {
		t.Fatal(err)
	}
	resp, got = do(http.MethodGet, prefix, "deflate, gzip;q=0.5", nil)
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("large LIST accepting gzip: Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, large) || len(got) >= len(large) {
		t.Errorf("large LIST: %d gzipped bytes uncompress to %d (%v), want the %d of the list", len(got), len(plain), err, len(large))
	}
	if resp, got = do(http.MethodGet, prefix, "identity", nil); resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(got, large) {
		t.Errorf("large LIST without gzip: Content-Encoding %q, %d bytes, want the list as is", resp.Header.Get("Content-Encoding"), len(got))
	}
	if err := d.setList([]byte("small")); err != nil {
		t.Fatal(err)
	}
	if resp, got = do(http.MethodGet, prefix, "gzip", nil); resp.Header.Get("Content-Encoding") != "" || string(got) != "small" {
		t.Errorf("small LIST: Content-Encoding %q, %q, want it as is", resp.Header.Get("Content-Encoding"), got)
	}
	if resp, got = do(http.MethodGet, prefix+"/db/backup", "", nil); len(got) != 3*streamChunk+5 || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("backup: %d bytes of %s, want %d of application/octet-stream", len(got), resp.Header.Get("Content-Type"), 3*streamChunk+5)
	}
	if resp, got = do(http.MethodGet, prefix+"/db", "", nil); !bytes.Equal(got, object) {
		t.Errorf("GET: %s %q, want the object", resp.Status, got)
	}
	if resp, _ = do(http.MethodDelete, prefix+"/db", "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %s, want 405", resp.Status)
	}
}
