package chanq

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeNode is a cluster node as a client sees it: hello says its role and
// the leader, a node that does not lead answers not_leader, and a leader
// may drop the connection on the next request of an op without answering
// (its death, as far as that request knows).
type fakeNode struct {
	ln net.Listener

	mu      sync.Mutex
	role    string
	leader  string   // the leader's address it names
	dropOn  string   // drop the connection on the next request of this op
	onDrop  func()   // then called (without mu)
	seen    []string // ops it answered ok
	nextID  int
	stopped bool
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{ln: ln, role: "follower"}
	go n.serve()
	t.Cleanup(n.stop)
	return n
}

func (n *fakeNode) addr() string { return n.ln.Addr().String() }

func (n *fakeNode) set(role, leader string) {
	n.mu.Lock()
	n.role, n.leader = role, leader
	n.mu.Unlock()
}

func (n *fakeNode) stop() {
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
	n.ln.Close()
}

func (n *fakeNode) ops() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.seen...)
}

func (n *fakeNode) serve() {
	for {
		c, err := n.ln.Accept()
		if err != nil {
			return
		}
		go n.conn(c)
	}
}

func (n *fakeNode) conn(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req map[string]any
		if json.Unmarshal(line, &req) != nil {
			return
		}
		op, _ := req["op"].(string)
		ans := map[string]any{"ok": true}
		n.mu.Lock()
		switch {
		case n.stopped || (n.dropOn != "" && n.dropOn == op):
			n.dropOn = ""
			hook := n.onDrop
			n.onDrop = nil
			n.mu.Unlock()
			if hook != nil {
				hook()
			}
			return
		case op == "hello":
			ans["server"], ans["version"], ans["protocol"] = "chanqd", "test", 1
			ans["role"] = n.role
			if n.leader != "" {
				ans["leader"] = n.leader
			} else {
				ans["leader"] = nil
			}
		case n.role != "leader":
			ans = map[string]any{"ok": false, "error": map[string]any{"code": "not_leader",
				"message": fmt.Sprintf("this node is not the leader (%s); leader: %s", n.role, orUnknown(n.leader))}}
		case op == "submit":
			n.nextID++
			ans["id"] = fmt.Sprintf("%s-%d", n.addr(), n.nextID)
			n.seen = append(n.seen, op)
		default:
			n.seen = append(n.seen, op)
		}
		n.mu.Unlock()
		if rid, ok := req["rid"]; ok {
			ans["rid"] = rid
		}
		out, _ := json.Marshal(ans)
		if _, err := c.Write(append(out, '\n')); err != nil {
			return
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDialLeaderGoesWhereAFollowerPoints(t *testing.T) {
	a, b := newFakeNode(t), newFakeNode(t)
	b.set("leader", b.addr())
	a.set("follower", b.addr())
	c, err := DialLeader(ctxT(t), []string{a.addr(), b.addr()}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Server().Role != "leader" || c.Server().Leader == nil || *c.Server().Leader != b.addr() {
		t.Fatalf("connected to %+v, want the leader %s", c.Server(), b.addr())
	}
}

func TestDialLeaderGivesUpWhenNoneServes(t *testing.T) {
	a := newFakeNode(t)
	a.set("candidate", "")
	start := time.Now()
	_, err := DialLeader(ctxT(t), []string{a.addr()}, "", &Options{DialTimeout: 400 * time.Millisecond})
	if err == nil {
		t.Fatal("a candidate alone was taken for the leader")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("gave up after %v, want about 400ms", d)
	}
}

func TestClusterFollowsNotLeader(t *testing.T) {
	a, b := newFakeNode(t), newFakeNode(t)
	a.set("leader", a.addr())
	b.set("follower", a.addr())
	cl, err := NewCluster(ctxT(t), []string{a.addr(), b.addr()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Leadership moves to b: a now points there.
	b.set("leader", b.addr())
	a.set("follower", b.addr())
	id, err := cl.Submit(ctxT(t), "q", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.ops()) != 1 || len(a.ops()) != 0 || id != b.addr()+"-1" {
		t.Fatalf("submit went to a %v / b %v, id %s", a.ops(), b.ops(), id)
	}
	if cl.Resubmits() != 0 || cl.Failovers() != 1 {
		t.Fatalf("resubmits %d failovers %d, want 0 and 1", cl.Resubmits(), cl.Failovers())
	}
}

func TestClusterSubmitsAgainWhatDiedUnanswered(t *testing.T) {
	a, b := newFakeNode(t), newFakeNode(t)
	a.set("leader", a.addr())
	b.set("follower", a.addr())
	cl, err := NewCluster(ctxT(t), []string{a.addr(), b.addr()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// a dies while the submit waits for its answer; b takes over.
	a.mu.Lock()
	a.dropOn = "submit"
	a.onDrop = func() {
		a.stop()
		b.set("leader", b.addr())
	}
	a.mu.Unlock()
	id, err := cl.Submit(ctxT(t), "q", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id != b.addr()+"-1" || cl.Resubmits() != 1 {
		t.Fatalf("id %s resubmits %d, want b's first and 1", id, cl.Resubmits())
	}
}

func TestClusterDoesNotMakeAnAckAgain(t *testing.T) {
	a, b := newFakeNode(t), newFakeNode(t)
	a.set("leader", a.addr())
	b.set("follower", a.addr())
	cl, err := NewCluster(ctxT(t), []string{a.addr(), b.addr()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	a.mu.Lock()
	a.dropOn = "ack"
	a.mu.Unlock()
	err = cl.Ack(ctxT(t), "1", nil)
	if !errors.Is(err, ErrConnClosed) {
		t.Fatalf("ack on a dead connection: %v, want ErrConnClosed", err)
	}
	b.set("leader", b.addr())
	a.stop()
	// The next call finds the new leader.
	if err := cl.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if len(b.ops()) != 1 || b.ops()[0] != "ping" {
		t.Fatalf("b saw %v, want only the ping", b.ops())
	}
}

func TestNotLeaderErrorNamesTheLeader(t *testing.T) {
	e := &Error{Op: "submit", Code: "not_leader", Message: "this node is not the leader (follower); leader: 10.0.0.2:7420"}
	if !errors.Is(e, ErrNotLeader) || e.Leader() != "10.0.0.2:7420" {
		t.Fatalf("Is %v Leader %q", errors.Is(e, ErrNotLeader), e.Leader())
	}
	e.Message = "this node is not the leader (candidate); leader: unknown"
	if e.Leader() != "" {
		t.Fatalf("unknown leader read as %q", e.Leader())
	}
	if got := ParseServers(" a:1, ,b:2,"); len(got) != 2 || got[0] != "a:1" || got[1] != "b:2" {
		t.Fatalf("ParseServers: %q", got)
	}
}
