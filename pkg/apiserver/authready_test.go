package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// fakeCA is a CA provider whose content can be set later.
type fakeCA struct {
	dynamiccertificates.CAContentProvider
	content atomic.Value
}

func (f *fakeCA) CurrentCABundleContent() []byte {
	b, _ := f.content.Load().([]byte)
	return b
}

func TestWithClientCAsLoaded(t *testing.T) {
	ca := &fakeCA{}
	var served atomic.Int32
	h := withClientCAsLoaded(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
	}), []dynamiccertificates.CAContentProvider{ca})

	// Without a client certificate: served at once.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if served.Load() != 1 {
		t.Fatal("request without a client certificate was held")
	}

	// With one: held until the CA has content.
	req := httptest.NewRequest(http.MethodGet, "/apis", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}
	done := make(chan struct{})
	go func() {
		h.ServeHTTP(httptest.NewRecorder(), req)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("request with a client certificate served before the CA loaded")
	case <-time.After(200 * time.Millisecond):
	}
	ca.content.Store([]byte("ca"))
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("request still held after the CA loaded")
	}
	if served.Load() != 2 {
		t.Errorf("served %d requests, want 2", served.Load())
	}
}
