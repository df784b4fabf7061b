package chanq

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func openssl(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}

// makePKI makes a CA ("ca"), a second CA ("other"), a server certificate
// for 127.0.0.1 and a client certificate, all from ca, in dir.
func makePKI(t *testing.T, dir string) {
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, ca := range []string{"ca", "other"} {
		openssl(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
			"-keyout", p(ca+".key"), "-out", p(ca+".crt"), "-days", "2", "-subj", "/CN=chanq go test "+ca)
	}
	for name, ext := range map[string]string{
		"server": "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth",
		"client": "extendedKeyUsage=clientAuth",
	} {
		must(t, os.WriteFile(p(name+".ext"), []byte(ext+"\n"), 0o600))
		openssl(t, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
			"-keyout", p(name+".key"), "-out", p(name+".csr"), "-subj", "/CN=chanq-go-"+name)
		openssl(t, "x509", "-req", "-in", p(name+".csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
			"-CAcreateserial", "-out", p(name+".crt"), "-days", "2", "-extfile", p(name+".ext"))
	}
}

// TestTLS: mutual TLS with a token, a full job cycle and a worker over it;
// an untrusted server and a client without a certificate are refused.
func TestTLS(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl command to make certificates")
	}
	dir := t.TempDir()
	makePKI(t, dir)
	p := func(n string) string { return filepath.Join(dir, n) }
	must(t, os.WriteFile(p("tokens"), []byte("tls-token\n"), 0o600))
	d := newDaemon(t, true, "--tls-listen", "127.0.0.1:0", "--tls-cert", p("server.crt"),
		"--tls-key", p("server.key"), "--tls-client-ca", p("ca.crt"), "--token-file", p("tokens"))
	ctx := tctx(t)

	cfg, err := TLSConfig(p("ca.crt"), p("client.crt"), p("client.key"))
	must(t, err)
	opts := &Options{TLS: cfg, Token: "tls-token"}
	c, err := Dial(ctx, d.tlsAddr, opts)
	must(t, err)
	defer c.Close()
	id, err := c.Submit(ctx, "tls", map[string]string{"over": "tls"}, nil)
	must(t, err)
	jobs, err := c.Fetch(ctx, []string{"tls"}, &FetchOptions{Timeout: 5 * time.Second})
	must(t, err)
	if len(jobs) != 1 || jobs[0].ID != id || string(jobs[0].Payload) != `{"over":"tls"}` {
		t.Fatalf("fetched over TLS: %+v", jobs)
	}
	must(t, c.Ack(ctx, id, "ok"))

	// A worker over TLS.
	id, err = c.Submit(ctx, "tls", 2, nil)
	must(t, err)
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := &Worker{Addr: d.tlsAddr, Options: opts, Queues: []string{"tls"},
		Handler: func(ctx context.Context, j *Job) (any, error) { return "via worker", nil }}
	go func() { done <- w.Run(wctx) }()
	o, err := c.Wait(ctx, id, testTimeout)
	must(t, err)
	stop()
	must(t, <-done)
	if o.State != "done" || string(o.Result) != `"via worker"` {
		t.Fatalf("worker over TLS: %+v", o)
	}

	// Refusals: a server not signed by the CA we trust, no client certificate.
	other, err := TLSConfig(p("other.crt"), p("client.crt"), p("client.key"))
	must(t, err)
	if c, err := Dial(ctx, d.tlsAddr, &Options{TLS: other, Token: "tls-token"}); err == nil {
		c.Close()
		t.Fatal("a server signed by an untrusted CA was accepted")
	}
	anon, err := TLSConfig(p("ca.crt"), "", "")
	must(t, err)
	if c, err := Dial(ctx, d.tlsAddr, &Options{TLS: anon, Token: "tls-token"}); err == nil {
		c.Close()
		t.Fatal("a client without a certificate was served")
	}
	if _, err := TLSConfig(p("missing.crt"), "", ""); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}
