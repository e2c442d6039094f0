// yardstick: etcd's own Go recipes (clientv3/concurrency.Mutex and Election, etcd 3.4.23 from
// Debian's golang-etcd-server-dev) timed by the benchmark, against the same etcd and in the same
// run as the library (bench/sections/go-yardstick.ts, bench/go.ts). Driven over JSON lines:
// one command per line on stdin, one reply per line on stdout.
//
//	yardstick -endpoints 127.0.0.1:2379 -ttl 10 -id go1
//
// One process = one etcd client and one concurrency.Session (one lease), as a Go service has.
// Every stamp is CLOCK_MONOTONIC in nanoseconds as a decimal string: the same clock as Node's
// process.hrtime, so stamps of Go and Node processes on this machine are comparable.
//
//	cycle    {name, n}                n x (Lock; Unlock) with no contention -> cycles {samples: [[cycleMs, lockMs, unlockMs]...]}
//	contend  {name, startNs, endNs}   loop Lock; Unlock from startNs to endNs -> result {holds: [[acquired, releaseStart, releaseDone, "", "1"]...]}
//	campaign {name, value}            Election.Campaign (in a goroutine)    -> elected {t}
//	resign   {name}                   Election.Resign                       -> resigning {t}, resigned {t}
//	close                             revoke the lease and exit             -> closed
//
// Built in GOPATH mode: GO111MODULE=off GOPATH=/usr/share/gocode go build. The process exits
// when its stdin closes (the runner died).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	v3 "go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"golang.org/x/sys/unix"
)

type command map[string]interface{}

func (c command) str(k string) string {
	v, _ := c[k].(string)
	return v
}

var outMu sync.Mutex

func emit(msg map[string]interface{}) {
	b, err := json.Marshal(msg)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"type":"error","message":%q}`, err.Error()))
	}
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func fail(c command, err error) {
	emit(map[string]interface{}{"type": "error", "cmd": c.str("type"), "name": c.str("name"), "message": err.Error()})
}

// monoNs reads CLOCK_MONOTONIC (Go's time.Now keeps its monotonic reading private).
func monoNs() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

func stamp() string { return strconv.FormatInt(monoNs(), 10) }

func msSince(from, to int64) float64 { return float64(to-from) / 1e6 }

type yardstick struct {
	session *concurrency.Session
	mu      sync.Mutex
	elect   map[string]*concurrency.Election
}

func (y *yardstick) election(name string) *concurrency.Election {
	y.mu.Lock()
	defer y.mu.Unlock()
	e, ok := y.elect[name]
	if !ok {
		e = concurrency.NewElection(y.session, name)
		y.elect[name] = e
	}
	return e
}

func (y *yardstick) cycle(c command) {
	n := int(c["n"].(float64))
	m := concurrency.NewMutex(y.session, c.str("name"))
	ctx := context.Background()
	samples := make([][3]float64, 0, n)
	for i := 0; i < n; i++ {
		t0 := monoNs()
		if err := m.Lock(ctx); err != nil {
			fail(c, err)
			return
		}
		t1 := monoNs()
		if err := m.Unlock(ctx); err != nil {
			fail(c, err)
			return
		}
		t2 := monoNs()
		samples = append(samples, [3]float64{msSince(t0, t2), msSince(t0, t1), msSince(t1, t2)})
	}
	emit(map[string]interface{}{"type": "cycles", "samples": samples})
}

func (y *yardstick) contend(c command) {
	start, _ := strconv.ParseInt(c.str("startNs"), 10, 64)
	end, _ := strconv.ParseInt(c.str("endNs"), 10, 64)
	m := concurrency.NewMutex(y.session, c.str("name"))
	ctx := context.Background()
	if wait := start - monoNs(); wait > 0 {
		time.Sleep(time.Duration(wait))
	}
	holds := [][5]string{}
	for monoNs() < end {
		if err := m.Lock(ctx); err != nil {
			fail(c, err)
			return
		}
		acquired := monoNs()
		releaseStart := monoNs()
		if err := m.Unlock(ctx); err != nil {
			fail(c, err)
			return
		}
		holds = append(holds, [5]string{strconv.FormatInt(acquired, 10), strconv.FormatInt(releaseStart, 10), stamp(), "", "1"})
	}
	emit(map[string]interface{}{"type": "result", "impl": "go", "holds": holds, "failedAttempts": 0, "watchDisconnects": 0})
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated etcd endpoints")
	ttl := flag.Int("ttl", 10, "session TTL in seconds")
	id := flag.String("id", "go", "name in messages")
	flag.Parse()

	cli, err := v3.New(v3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 10 * time.Second})
	if err != nil {
		emit(map[string]interface{}{"type": "error", "message": err.Error()})
		os.Exit(1)
	}
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(*ttl))
	if err != nil {
		emit(map[string]interface{}{"type": "error", "message": err.Error()})
		os.Exit(1)
	}
	y := &yardstick{session: session, elect: map[string]*concurrency.Election{}}
	shutdown := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = cli.Revoke(ctx, session.Lease())
		cli.Close()
	}
	emit(map[string]interface{}{"type": "ready", "id": *id, "pid": os.Getpid(), "lease": fmt.Sprintf("%x", session.Lease())})

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var c command
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			emit(map[string]interface{}{"type": "error", "message": "bad command: " + err.Error()})
			continue
		}
		switch c.str("type") {
		case "cycle":
			y.cycle(c)
		case "contend":
			go y.contend(c)
		case "campaign":
			go func(c command) {
				if err := y.election(c.str("name")).Campaign(context.Background(), c.str("value")); err != nil {
					fail(c, err)
					return
				}
				emit(map[string]interface{}{"type": "elected", "t": stamp(), "value": c.str("value")})
			}(c)
		case "resign":
			emit(map[string]interface{}{"type": "resigning", "t": stamp()})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := y.election(c.str("name")).Resign(ctx)
			cancel()
			if err != nil {
				fail(c, err)
				continue
			}
			emit(map[string]interface{}{"type": "resigned", "t": stamp()})
		case "close":
			shutdown()
			emit(map[string]interface{}{"type": "closed"})
			os.Exit(0)
		default:
			emit(map[string]interface{}{"type": "error", "message": "unknown command " + c.str("type")})
		}
	}
	shutdown()
}
