package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
	"github.com/etcdaas/etcdaas/test/s3server"
)

func TestS3(t *testing.T) {
	store := s3server.Start(t)
	dest, err := NewS3(S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: "default/my-etcd",
		AccessKeyID: store.AccessKeyID, SecretAccessKey: store.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	testDestination(t, dest)

	// The bucket holds the two kept backups (one per instance) with their provenance as object metadata, and no
	// incomplete upload.
	client, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for obj := range client.ListObjects(context.Background(), store.Bucket, minio.ListObjectsOptions{Recursive: true, WithMetadata: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
		st, err := client.StatObject(context.Background(), store.Bucket, obj.Key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// testDestination leaves one backup of each of two instances sharing the prefix.
		if uid := st.UserMetadata[MetaInstanceUID]; len(st.UserMetadata[MetaSHA256]) != 64 || (uid != "uid-1" && uid != "uid-other") {
			t.Errorf("%s carries metadata %v, want its provenance", obj.Key, st.UserMetadata)
		}
	}
	if len(keys) != 2 {
		t.Fatalf("bucket holds %v, want the two kept backups", keys)
	}
	for up := range client.ListIncompleteUploads(context.Background(), store.Bucket, "", true) {
		t.Errorf("multipart upload left behind: %s (%v)", up.Key, up.Err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "default/my-etcd/") || strings.Contains(k, incompletePrefix) {
			t.Errorf("unexpected object %s", k)
		}
	}
}

func TestS3WrongCredentials(t *testing.T) {
	store := s3server.Start(t)
	for name, cfg := range map[string]S3Config{
		"unknown key":  {AccessKeyID: "nobody", SecretAccessKey: store.SecretAccessKey},
		"wrong secret": {AccessKeyID: store.AccessKeyID, SecretAccessKey: "wrong-secret"},
	} {
		cfg.Endpoint, cfg.Bucket = store.Endpoint, store.Bucket
		dest, err := NewS3(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dest.List(context.Background())
		if err == nil || !strings.Contains(err.Error(), "S3") {
			t.Errorf("%s: listing gave %v, want an error naming the S3 credentials", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := NewS3(S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket}); err == nil || !strings.Contains(err.Error(), "credentials are missing") {
		t.Errorf("missing credentials: %v", err)
	}
}

// TestS3SweepsInterruptedUploads: what uploads killed mid-way left below the incomplete
// prefix (an uploaded object never committed, a multipart upload never completed) is deleted
// before the instance's next backup once older than OrphanAge; that of another instance
// sharing the prefix, and young uploads, stay.
func TestS3SweepsInterruptedUploads(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	dest, err := NewS3(S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: "ns/db/",
		AccessKeyID: store.AccessKeyID, SecretAccessKey: store.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	client, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	ownObject, ownUpload := makeOrphans(t, ctx, dest, client, store.Bucket, "uid-1")
	otherObject, otherUpload := makeOrphans(t, ctx, dest, client, store.Bucket, "uid-2")
	leftovers := func() []string { return listLeftovers(t, ctx, client, store.Bucket, "ns/db/") }
	all := []string{ownObject, otherObject, "upload " + ownUpload, "upload " + otherUpload}
	slices.Sort(all)
	if got := leftovers(); !slices.Equal(got, all) {
		t.Fatalf("before: %v, want %v", got, all)
	}

	// A backup now: the leftovers are younger than OrphanAge and stay.
	snap := func(body string) Snapshot {
		return Snapshot{Reader: bytes.NewReader(snapshottest.WithHash([]byte(body))), Revision: 5}
	}
	if _, err := Take(ctx, dest, snap("young"), "uid-1", time.Now); err != nil {
		t.Fatal(err)
	}
	if got := leftovers(); len(got) != 5 { // the four and the new backup
		t.Fatalf("after a backup with young leftovers: %v", got)
	}
	// A backup OrphanAge later: the instance's own leftovers go, the other instance's stay.
	later := func() time.Time { return time.Now().Add(OrphanAge + time.Minute) }
	taken, err := Take(ctx, dest, snap("later"), "uid-1", later)
	if err != nil {
		t.Fatal(err)
	}
	got := leftovers()
	for _, want := range []string{otherObject, "upload " + otherUpload, "ns/db/" + taken.Key} {
		if !slices.Contains(got, want) {
			t.Errorf("%s is gone: %v", want, got)
		}
	}
	for _, gone := range []string{ownObject, "upload " + ownUpload} {
		if slices.Contains(got, gone) {
			t.Errorf("%s is still there: %v", gone, got)
		}
	}
}

// makeOrphans leaves what an interrupted backup of instance uid leaves in dest's bucket: a
// half-written object and an incomplete multipart upload with one part. It returns their keys.
func makeOrphans(t *testing.T, ctx context.Context, dest *S3, client *minio.Client, bucket, uid string) (object, upload string) {
	t.Helper()
	core := minio.Core{Client: client}
	object = dest.incomplete(uid) + Key(time.Now(), 1)
	if _, err := client.PutObject(ctx, bucket, object, strings.NewReader("half"), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	upload = dest.incomplete(uid) + Key(time.Now().Add(time.Second), 2)
	id, err := core.NewMultipartUpload(ctx, bucket, upload, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.PutObjectPart(ctx, bucket, upload, id, 1, strings.NewReader("part"), 4, minio.PutObjectPartOptions{}); err != nil {
		t.Fatal(err)
	}
	return object, upload
}

// listLeftovers lists, sorted, the objects under prefix in bucket and, as "upload KEY", its
// incomplete uploads.
func listLeftovers(t *testing.T, ctx context.Context, client *minio.Client, bucket, prefix string) []string {
	t.Helper()
	var out []string
	for obj := range client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		out = append(out, obj.Key)
	}
	for up := range client.ListIncompleteUploads(ctx, bucket, prefix, true) {
		if up.Err != nil {
			t.Fatal(up.Err)
		}
		out = append(out, "upload "+up.Key)
	}
	slices.Sort(out)
	return out
}

// TestS3ListSkipsForeignObjects: an object named like a backup but written by something else
// (no provenance metadata) in a shared bucket and prefix is not listed and does not make the
// listing, and so retention and restoreFrom, fail.
func TestS3ListSkipsForeignObjects(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	dest, err := NewS3(S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: "shared",
		AccessKeyID: store.AccessKeyID, SecretAccessKey: store.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	ours := Key(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 7)
	up, err := dest.Write(ctx, ours, "uid", strings.NewReader("complete"))
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Commit(ctx, Info{Key: ours, Revision: 7, Size: 8, Time: time.Now(), InstanceUID: "uid", SHA256: strings.Repeat("ab", 32)}); err != nil {
		t.Fatal(err)
	}
	client, err := store.Client()
	if err != nil {
		t.Fatal(err)
	}
	foreign := Key(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 8)
	if _, err := client.PutObject(ctx, store.Bucket, "shared/"+foreign, strings.NewReader("not ours"), 8, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	list, err := dest.List(ctx)
	if err != nil {
		t.Fatalf("List with a foreign object: %v", err)
	}
	if len(list) != 1 || list[0].Key != ours {
		t.Errorf("List = %+v, want only %s", list, ours)
	}
	if _, _, err := dest.Open(ctx, foreign); !errors.Is(err, ErrNoProvenance) {
		t.Errorf("Open(%s) = %v, want ErrNoProvenance", foreign, err)
	}
}

// TestS3DoesNotQuoteWhatIsNotAnS3Error: an endpoint that answers with something else than an
// S3 error document (any HTTP service the instance's author names) is reported by its status
// only: its body, which minio-go would quote, reaches the instance's status, Events and the
// /backups answer of whoever may write the instance. The error still says whether retrying
// may help (5xx) or the configuration must change (4xx).
func TestS3DoesNotQuoteWhatIsNotAnS3Error(t *testing.T) {
	const secret = "INTERNAL-ONLY-PAGE: db password hunter2"
	for _, c := range []struct {
		status int
		class  error
	}{{http.StatusBadRequest, ErrMisconfigured}, {http.StatusInternalServerError, ErrStoreUnavailable}, {http.StatusTeapot, ErrMisconfigured}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(c.status)
			_, _ = io.WriteString(w, secret)
		}))
		dest, err := NewS3(S3Config{Endpoint: srv.URL, Bucket: "backups", Region: "us-east-1", AccessKeyID: "k", SecretAccessKey: "s"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = dest.List(context.Background())
		srv.Close()
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), strconv.Itoa(c.status)) || !errors.Is(err, c.class) {
			t.Errorf("an endpoint answering %d: %v, want its status, class %v, and not its body", c.status, err, c.class)
		}
	}
}

// TestS3ListWhileRetentionDeletes: a backup that retention (of this controller or of a
// previous leader still finishing) deletes between the listing of the prefix and the read of
// its provenance is gone, not an error. Such an error made GET /backups a 500 "no such
// backup", and spec.restoreFrom's Newest fail with NoBackups, while backups were there.
func TestS3ListWhileRetentionDeletes(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	cfg := S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: "ns/db/",
		AccessKeyID: store.AccessKeyID, SecretAccessKey: store.SecretAccessKey}
	direct, err := NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	taken, _ := takeThree(t, ctx, direct, clock(time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)))
	oldest := taken[0].Key

	// Retention deletes the oldest backup just before the listing reads its provenance.
	target, err := url.Parse(store.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/"+oldest) {
			once.Do(func() {
				if err := direct.Delete(ctx, oldest); err != nil {
					t.Errorf("deleting %s: %v", oldest, err)
				}
			})
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cfg.Endpoint = srv.URL
	dest, err := NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}

	listed, err := dest.List(ctx)
	if err != nil {
		t.Fatalf("List while retention deletes %s: %v, want the other backups", oldest, err)
	}
	var keys []string
	for _, b := range listed {
		keys = append(keys, b.Key)
	}
	if want := []string{taken[2].Key, taken[1].Key}; !slices.Equal(keys, want) {
		t.Errorf("listed %v, want %v", keys, want)
	}
}

// gatedReader is a snapshot stream whose first Read says it started (started is closed)
// and waits until wait is closed.
type gatedReader struct {
	r             io.Reader
	started, wait chan struct{}
	once          bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if !g.once {
		g.once = true
		close(g.started)
		<-g.wait
	}
	return g.r.Read(p)
}

// TestS3ConcurrentBackupsOfTwoInstancesKeepBoth takes backups of two instances sharing a
// bucket and prefix at the same millisecond and revision, as two instances created together
// with the same schedule do: each must get a key of its own. With one key for both, the
// second commit replaced the first instance's backup with its own, and the first instance's
// status named a backup that was no longer its.
func TestS3ConcurrentBackupsOfTwoInstancesKeepBoth(t *testing.T) {
	ctx := context.Background()
	store := s3server.Start(t)
	dest, err := NewS3(S3Config{Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: "shared/",
		AccessKeyID: store.AccessKeyID, SecretAccessKey: store.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 6, 20, 17, 48e6, time.UTC)
	now := func() time.Time { return at }
	firstStarted, secondStarted := make(chan struct{}), make(chan struct{})
	first := &gatedReader{r: bytes.NewReader(payload(2048, 1)), started: firstStarted, wait: secondStarted}
	second := &gatedReader{r: bytes.NewReader(payload(4096, 2)), started: secondStarted, wait: make(chan struct{})}
	close(second.wait)

	type result struct {
		info Info
		err  error
	}
	results := make(chan result, 1)
	go func() {
		info, err := Take(ctx, dest, Snapshot{Reader: first, Revision: 1, EtcdVersion: "3.7.0"}, "uid-a", now)
		results <- result{info, err}
	}()
	<-firstStarted // the first backup has its key and is streaming
	b, err := Take(ctx, dest, Snapshot{Reader: second, Revision: 1, EtcdVersion: "3.7.0"}, "uid-b", now)
	if err != nil {
		t.Fatal(err)
	}
	r := <-results
	if r.err != nil {
		t.Fatal(r.err)
	}
	a := r.info
	if a.Key == b.Key {
		t.Fatalf("both backups got key %s: the second replaced the first", a.Key)
	}
	for _, want := range []Info{a, b} {
		_, got, err := dest.Open(ctx, want.Key)
		if err != nil {
			t.Fatalf("opening %s: %v", want.Key, err)
		}
		if got.InstanceUID != want.InstanceUID || got.SHA256 != want.SHA256 {
			t.Errorf("%s holds the backup of %s (sha256 %s), want the one of %s (sha256 %s)", want.Key, got.InstanceUID, got.SHA256, want.InstanceUID, want.SHA256)
		}
	}
}
