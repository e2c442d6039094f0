// etcd-peer: a Go service that uses etcd's own Go recipes (clientv3/concurrency.Mutex,
// concurrency.Election, contrib/recipes.RWMutex), driven by the interop tests over JSON lines:
// one command per line on stdin, one message per line on stdout (like test/fixtures/*-worker.ts).
//
//	etcd-peer -endpoints 127.0.0.1:2379 -ttl 5 -id go1
//
// One process = one concurrency.Session (one lease), as a real Go service would have. Every
// command runs in its own goroutine, so a blocked Lock or Campaign does not stop the next
// command. Names are passed as Go callers pass them: the prefix WITHOUT the trailing "/".
//
// Revisions and lease ids are sent as decimal strings (they can exceed 2^53). Every message
// carries "at" (Unix ms). The process exits when stdin closes (the test process died), after
// trying to revoke its lease.
//
// Commands ({"type": ..., "name": <prefix without "/">, "tag": <id of a read/write hold or observer>})
// and their replies (every reply echoes name and tag; a failure replies {"type":"error",...}):
//
//	lock [timeoutMs] / unlock   concurrency.Mutex     -> locked {key, rev} or lock-timeout / unlocked
//	counter {key, rounds}       rounds x (Lock; get key; put key+1; Unlock) -> counted
//	campaign {value}            Election.Campaign     -> elected {key, rev, value}
//	proclaim {value} / resign   Election              -> proclaimed / resigned
//	leader                      Election.Leader       -> leader {key, value, rev} or {none: true}
//	observe / unobserve         Election.Observe      -> observing, observed {key, value, rev}..., observe-ended
//	rlock / runlock             recipe.RWMutex (tag)  -> rlocked / runlocked
//	wlock / wunlock             recipe.RWMutex (tag)  -> wlocked / wunlocked
//	close                       revoke the lease, exit -> closed
//
// On start: ready {id, pid, lease (hex, as in keys), leaseId (decimal)}; session-ended when
// the session's keepalive stops.
//
// Built in GOPATH mode against Debian's golang-etcd-server-dev (etcd 3.4.23 sources):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	v3 "go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	recipe "go.etcd.io/etcd/contrib/recipes"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
)

type peer struct {
	cli     *v3.Client
	session *concurrency.Session
	id      string

	outMu    sync.Mutex
	shutOnce sync.Once

	mu        sync.Mutex
	mutexes   map[string]*concurrency.Mutex    // by name: one key per session and name, as in Go
	elections map[string]*concurrency.Election // by name
	rw        map[string]*recipe.RWMutex       // by tag: each hold has its own key
	observers map[string]context.CancelFunc    // by tag
}

type command map[string]interface{}

func (c command) str(k string) string {
	v, _ := c[k].(string)
	return v
}

func (p *peer) emit(msg map[string]interface{}) {
	msg["at"] = time.Now().UnixMilli()
	b, err := json.Marshal(msg)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"type":"error","message":%q}`, err.Error()))
	}
	p.outMu.Lock()
	defer p.outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func (p *peer) fail(c command, err error) {
	p.emit(map[string]interface{}{"type": "error", "cmd": c.str("type"), "name": c.str("name"), "tag": c.str("tag"), "message": err.Error()})
}

func rev(n int64) string { return strconv.FormatInt(n, 10) }

// mutexRevision is the create revision of the Mutex's key (its fencing token). Mutex keeps it
// private; IsOwner() exposes it as the comparison CreateRevision(myKey) == myRev.
func mutexRevision(m *concurrency.Mutex) int64 {
	cmp := pb.Compare(m.IsOwner())
	if t, ok := cmp.TargetUnion.(*pb.Compare_CreateRevision); ok {
		return t.CreateRevision
	}
	return -1
}

func (p *peer) mutex(name string) *concurrency.Mutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.mutexes[name]
	if !ok {
		m = concurrency.NewMutex(p.session, name)
		p.mutexes[name] = m
	}
	return m
}

func (p *peer) election(name string) *concurrency.Election {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.elections[name]
	if !ok {
		e = concurrency.NewElection(p.session, name)
		p.elections[name] = e
	}
	return e
}

func (p *peer) rwmutex(tag string, name string) *recipe.RWMutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := recipe.NewRWMutex(p.session, name)
	p.rw[tag] = m
	return m
}

func (p *peer) takeRW(tag string) *recipe.RWMutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.rw[tag]
	delete(p.rw, tag)
	return m
}

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func (p *peer) handle(c command) {
	name, tag := c.str("name"), c.str("tag")
	reply := func(typ string, extra map[string]interface{}) {
		msg := map[string]interface{}{"type": typ, "name": name, "tag": tag}
		for k, v := range extra {
			msg[k] = v
		}
		p.emit(msg)
	}
	switch c.str("type") {
	case "lock":
		m := p.mutex(name)
		// Without timeoutMs a waiter waits as long as the holder holds. With it, Go's Lock gives
		// up when its context expires and deletes its waiter key (Mutex.Lock calls Unlock).
		ctx := context.Background()
		if ms, ok := c["timeoutMs"].(float64); ok && ms > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
			defer cancel()
		}
		if err := m.Lock(ctx); err != nil {
			if ctx.Err() != nil {
				reply("lock-timeout", map[string]interface{}{"message": err.Error()})
				return
			}
			p.fail(c, err)
			return
		}
		reply("locked", map[string]interface{}{"key": m.Key(), "rev": rev(mutexRevision(m))})
	case "unlock":
		ctx, cancel := opCtx()
		defer cancel()
		if err := p.mutex(name).Unlock(ctx); err != nil {
			p.fail(c, err)
			return
		}
		reply("unlocked", nil)
	case "counter":
		p.counter(c)
	case "campaign":
		e := p.election(name)
		if err := e.Campaign(context.Background(), c.str("value")); err != nil {
			p.fail(c, err)
			return
		}
		reply("elected", map[string]interface{}{"key": e.Key(), "rev": rev(e.Rev()), "value": c.str("value")})
	case "proclaim":
		ctx, cancel := opCtx()
		defer cancel()
		if err := p.election(name).Proclaim(ctx, c.str("value")); err != nil {
			p.fail(c, err)
			return
		}
		reply("proclaimed", map[string]interface{}{"value": c.str("value")})
	case "resign":
		ctx, cancel := opCtx()
		defer cancel()
		if err := p.election(name).Resign(ctx); err != nil {
			p.fail(c, err)
			return
		}
		reply("resigned", nil)
	case "leader":
		ctx, cancel := opCtx()
		defer cancel()
		resp, err := concurrency.NewElection(p.session, name).Leader(ctx)
		if err == concurrency.ErrElectionNoLeader {
			reply("leader", map[string]interface{}{"none": true})
			return
		}
		if err != nil {
			p.fail(c, err)
			return
		}
		kv := resp.Kvs[0]
		reply("leader", map[string]interface{}{"key": string(kv.Key), "value": string(kv.Value), "rev": rev(kv.CreateRevision)})
	case "observe":
		ctx, cancel := context.WithCancel(context.Background())
		p.mu.Lock()
		p.observers[tag] = cancel
		p.mu.Unlock()
		ch := concurrency.NewElection(p.session, name).Observe(ctx)
		reply("observing", nil)
		for resp := range ch {
			kv := resp.Kvs[0]
			reply("observed", map[string]interface{}{"key": string(kv.Key), "value": string(kv.Value), "rev": rev(kv.CreateRevision)})
		}
		reply("observe-ended", nil)
	case "unobserve":
		p.mu.Lock()
		cancel := p.observers[tag]
		delete(p.observers, tag)
		p.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	case "rlock":
		// recipe.RWMutex has no context: RLock/Lock wait until they hold (or fail).
		if err := p.rwmutex(tag, name).RLock(); err != nil {
			p.fail(c, err)
			return
		}
		reply("rlocked", nil)
	case "runlock":
		m := p.takeRW(tag)
		if m == nil {
			p.fail(c, fmt.Errorf("no read lock with tag %q", tag))
			return
		}
		if err := m.RUnlock(); err != nil {
			p.fail(c, err)
			return
		}
		reply("runlocked", nil)
	case "wlock":
		if err := p.rwmutex(tag, name).Lock(); err != nil {
			p.fail(c, err)
			return
		}
		reply("wlocked", nil)
	case "wunlock":
		m := p.takeRW(tag)
		if m == nil {
			p.fail(c, fmt.Errorf("no write lock with tag %q", tag))
			return
		}
		if err := m.Unlock(); err != nil {
			p.fail(c, err)
			return
		}
		reply("wunlocked", nil)
	case "close":
		p.shutdown()
		reply("closed", nil)
		os.Exit(0)
	default:
		p.fail(c, fmt.Errorf("unknown command %q", c.str("type")))
	}
}

// counter: `rounds` unprotected read-modify-write increments of the key `key`, each under the
// Go Mutex `name`. Only the lock keeps increments from being lost.
func (p *peer) counter(c command) {
	name, key := c.str("name"), c.str("key")
	rounds := 0
	if r, ok := c["rounds"].(float64); ok {
		rounds = int(r)
	}
	m := p.mutex(name)
	for i := 0; i < rounds; i++ {
		if err := m.Lock(context.Background()); err != nil {
			p.fail(c, err)
			return
		}
		ctx, cancel := opCtx()
		resp, err := p.cli.Get(ctx, key)
		if err == nil {
			current := 0
			if len(resp.Kvs) > 0 {
				current, err = strconv.Atoi(string(resp.Kvs[0].Value))
			}
			if err == nil {
				time.Sleep(time.Duration(rand.Intn(5000)) * time.Microsecond)
				_, err = p.cli.Put(ctx, key, strconv.Itoa(current+1))
			}
		}
		cancel()
		uctx, ucancel := opCtx()
		uerr := m.Unlock(uctx)
		ucancel()
		if err == nil {
			err = uerr
		}
		if err != nil {
			p.fail(c, err)
			return
		}
	}
	p.emit(map[string]interface{}{"type": "counted", "name": name, "tag": c.str("tag"), "rounds": rounds})
}

// shutdown revokes the lease (deleting every key of this session) and closes the client.
// Once: the close command and the end of stdin may both ask for it.
func (p *peer) shutdown() {
	p.shutOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			p.session.Close()
			p.cli.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
		}
	})
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints")
	ttl := flag.Int("ttl", 5, "session TTL in seconds")
	id := flag.String("id", "go", "name of this peer, for messages")
	flag.Parse()

	cli, err := v3.New(v3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-peer: connect: %v\n", err)
		os.Exit(2)
	}
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(*ttl))
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-peer: session: %v\n", err)
		os.Exit(2)
	}
	p := &peer{
		cli: cli, session: session, id: *id,
		mutexes:   map[string]*concurrency.Mutex{},
		elections: map[string]*concurrency.Election{},
		rw:        map[string]*recipe.RWMutex{},
		observers: map[string]context.CancelFunc{},
	}
	go func() {
		<-session.Done()
		p.emit(map[string]interface{}{"type": "session-ended", "id": p.id})
	}()
	p.emit(map[string]interface{}{
		"type": "ready", "id": p.id, "pid": os.Getpid(),
		"lease": fmt.Sprintf("%x", int64(session.Lease())), "leaseId": strconv.FormatInt(int64(session.Lease()), 10),
	})

	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var c command
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			p.emit(map[string]interface{}{"type": "error", "message": "bad command: " + err.Error()})
			continue
		}
		go p.handle(c)
	}
	// stdin closed: the test process is gone (or done with us). Leave nothing behind.
	p.shutdown()
}
