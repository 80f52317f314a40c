package etcdcluster

import (
	"context"
	"fmt"
	"testing"

	"github.com/etcdaas/etcdaas/pkg/etcdtest"
)

func TestReadHistoryFindsTheLastCompaction(t *testing.T) {
	ctx := context.Background()
	access := &Access{Endpoints: []string{etcdtest.Start(t, nil)}}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	var head int64
	for i := range 40 {
		resp, err := cli.Put(ctx, fmt.Sprintf("k%d", i%3), "v")
		if err != nil {
			t.Fatal(err)
		}
		head = resp.Header.Revision
	}
	read := func(since int64) History {
		t.Helper()
		h, err := ReadHistory(ctx, access, since)
		if err != nil {
			t.Fatalf("ReadHistory(%d): %v", since, err)
		}
		return h
	}
	if h := read(0); h != (History{Oldest: 1, Head: head}) {
		t.Fatalf("never compacted: %+v, want oldest 1 and head %d", h, head)
	}
	// A revision found before beyond the head (the data was since restored from an older
	// snapshot) is not an error: the head is all that is known.
	if h := read(head + 100); h != (History{Oldest: head, Head: head}) {
		t.Fatalf("read since a revision beyond the head: %+v, want oldest and head %d", h, head)
	}
	// Every compaction revision is found, from no hint and from an older one.
	for _, rev := range []int64{2, 17, head - 1, head} {
		if _, err := cli.Compact(ctx, rev); err != nil {
			t.Fatal(err)
		}
		for _, since := range []int64{0, 1, 2} {
			if h := read(since); h != (History{Oldest: rev, Head: head}) {
				t.Errorf("compacted at %d, read since %d: %+v", rev, since, h)
			}
		}
		if h := read(rev); h.Oldest != rev {
			t.Errorf("compacted at %d, read since that revision: %+v", rev, h)
		}
	}
}
