package http

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/gatehouse-pbx/gatehouse/internal/testpeer"
	"github.com/gatehouse-pbx/gatehouse/internal/testpki"
)

// nginxBehindGate starts nginx with locations and gatehouse in front of
// it as hq.example.com.
func nginxBehindGate(t *testing.T, locations string) *gate {
	port := fmt.Sprint(testpeer.FreePort(t))
	testpeer.Nginx(t, "server {\n\t\tlisten 127.0.0.1:"+port+";\n"+locations+"\n\t}")
	testpeer.WaitListening(t, "127.0.0.1:"+port)
	return startGate(t, testpki.NewCA(t, "test"), fmt.Sprintf(echoSvc, port), "")
}

// TestPooledHeadsWithRealPeers: curl sends requests of different shapes
// on one kept-alive connection through gatehouse to nginx, each with
// fields of its own, and nginx answers each with fields of its own. The
// request and answer structs are pooled and reused from one request to
// the next (h1's Release): nothing of one may show in the next, either
// towards nginx or towards curl.
func TestPooledHeadsWithRealPeers(t *testing.T) {
	curl := testpeer.Program(t, "curl", "curl")
	g := nginxBehindGate(t, `
		location /echo {
			add_header X-Seen-A "$http_x_a";
			add_header X-Seen-B "$http_x_b";
			return 200 "a=$http_x_a b=$http_x_b args=$args method=$request_method\n";
		}
		location /empty { return 204; }`)
	base := "http://hq.example.com"
	// --next resets every option but the connections curl keeps.
	var args []string
	for i, req := range [][]string{
		{base + "/echo?x=1", "-H", "X-A: one", "-H", "X-C: c", "-H", "X-D: d", "-H", "X-E: e"},
		{base + "/empty"},
		{base + "/echo", "-H", "X-B: two", "-d", "body"},
		{base + "/echo"},
	} {
		if i > 0 {
			args = append(args, "--next")
		}
		args = append(args, "-sS", "--max-time", "30", "--interface", "127.0.0.2",
			"--connect-to", "hq.example.com:80:"+g.http, "-i", "-w", "connects=%{num_connects}\n")
		args = append(args, req...)
	}
	cmd := exec.Command(curl, args...)
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, res)
	}
	out := string(res)
	parts := strings.Split(out, "connects=")
	if len(parts) != 5 {
		t.Fatalf("curl printed %d answers, want 4:\n%s", len(parts)-1, out)
	}
	for i, p := range parts[2:] {
		if !strings.HasPrefix(p, "0") {
			t.Errorf("request %d opened a connection of its own:\n%s", i+2, out)
		}
	}
	want := []struct{ has, hasNot []string }{
		{[]string{"200 OK", "X-Seen-A: one", "a=one b= args=x=1 method=GET"}, []string{"X-Seen-B"}},
		{[]string{"204 No Content"}, []string{"X-Seen-A", "X-Seen-B", "a="}},
		{[]string{"200 OK", "X-Seen-B: two", "a= b=two args= method=POST"}, []string{"X-Seen-A"}},
		{[]string{"200 OK", "a= b= args= method=GET"}, []string{"X-Seen-A", "X-Seen-B"}},
	}
	answers := parts[:4]
	answers[0] = parts[0]
	for i := 1; i < 4; i++ {
		answers[i] = strings.SplitN(parts[i], "\n", 2)[1] // after the previous answer's connects line
	}
	for i, w := range want {
		for _, s := range w.has {
			if !strings.Contains(answers[i], s) {
				t.Errorf("answer %d lacks %q:\n%s", i+1, s, answers[i])
			}
		}
		for _, s := range w.hasNot {
			if strings.Contains(answers[i], s) {
				t.Errorf("answer %d has %q, left from an earlier message:\n%s", i+1, s, answers[i])
			}
		}
	}
}

// TestPooledHeadsAcrossClients: four curls at once, each sending 25
// requests on its own kept-alive connection with fields naming the client
// and the request; every answer nginx gives names them back. The pools
// are shared by every connection: a message given back while still in
// use would carry another client's fields.
func TestPooledHeadsAcrossClients(t *testing.T) {
	curl := testpeer.Program(t, "curl", "curl")
	g := nginxBehindGate(t, `
		location /echo {
			add_header X-Seen "$http_x_who";
			return 200 "who=$http_x_who args=$args\n";
		}`)
	const clients, requests = 4, 25
	errs := make(chan error, clients)
	for c := range clients {
		go func() {
			var args []string
			for r := range requests {
				if r > 0 {
					args = append(args, "--next")
				}
				who := fmt.Sprintf("c%d-r%d", c, r)
				args = append(args, "-sS", "--max-time", "30", "--interface", fmt.Sprintf("127.0.0.%d", c+2),
					"--connect-to", "hq.example.com:80:"+g.http, "-i",
					"http://hq.example.com/echo?"+who, "-H", "X-Who: "+who)
			}
			res, err := exec.Command(curl, args...).CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("client %d: curl: %v\n%s", c, err, res)
				return
			}
			for r := range requests {
				who := fmt.Sprintf("c%d-r%d", c, r)
				if !strings.Contains(string(res), "X-Seen: "+who+"\r\n") || !strings.Contains(string(res), "who="+who+" args="+who+"\n") {
					errs <- fmt.Errorf("client %d: no answer for %s:\n%s", c, who, res)
					return
				}
			}
			if n := strings.Count(string(res), "HTTP/1.1 200 OK"); n != requests {
				errs <- fmt.Errorf("client %d: %d answers, want %d", c, n, requests)
				return
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
