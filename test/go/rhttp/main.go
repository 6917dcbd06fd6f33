// Command rhttp is the Go side of the reverse-HTTP interop test (test/interop-http-go.test.ts): net/http
// over hashicorp/yamux (Debian's, 2019) over gorilla/websocket, the way Go wslis's rhttp does it.
//
//	rhttp -mode client               Listens on 127.0.0.1:0 as a wslis server: upgrades, runs yamux.Client,
//	                                 and drives the device with an http.Client whose DialContext opens a
//	                                 stream. Runs its checks, prints one JSON line of results, exits.
//	rhttp -mode device -url ws://…   Dials as a device: yamux.Server, then http.Serve(session, handlers).
//
// Lines on stdout are JSON: {"event":"listening","port":…}, {"event":"result",…}, {"event":"serving"}.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"
)

// wsConn is a WebSocket as the byte stream yamux runs on: binary messages in, any boundaries.
type wsConn struct {
	ws      *websocket.Conn
	reader  io.Reader
	writeMu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.reader == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			c.reader = r
		}
		n, err := c.reader.Read(p)
		if err == io.EOF {
			c.reader = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }

func emit(v map[string]interface{}) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
}

func fail(format string, args ...interface{}) {
	emit(map[string]interface{}{"event": "error", "error": fmt.Sprintf(format, args...)})
	os.Exit(1)
}

func main() {
	mode := flag.String("mode", "", "client or device")
	url := flag.String("url", "", "ws:// URL of the wslis server (device mode)")
	flag.Parse()
	// Never outlive a wedged test.
	time.AfterFunc(60*time.Second, func() { fail("timed out after 60 s") })
	switch *mode {
	case "client":
		runClient()
	case "device":
		runDevice(*url)
	default:
		fail("unknown mode %q", *mode)
	}
}

// runClient is the wslis server with Go's http.Client going through the device.
func runClient() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	sessions := make(chan *yamux.Session, 1)
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		session, err := yamux.Client(&wsConn{ws: ws}, nil)
		if err != nil {
			fail("yamux client: %v", err)
		}
		sessions <- session
	}))
	emit(map[string]interface{}{"event": "listening", "port": ln.Addr().(*net.TCPAddr).Port})
	session := <-sessions

	client := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return session.Open()
			},
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: 1 * time.Second,
		},
	}
	result := map[string]interface{}{"event": "result"}

	// GET
	res, err := client.Get("http://device.local/hello?x=1")
	if err != nil {
		fail("GET: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	result["getStatus"] = res.StatusCode
	result["getBody"] = string(body)
	result["getContentLength"] = res.ContentLength

	// POST 1 MiB, echoed back; the device streams it (chunked).
	data := make([]byte, 1<<20)
	rand.New(rand.NewSource(7)).Read(data)
	sent := sha256.Sum256(data)
	res, err = client.Post("http://device.local/echo", "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		fail("POST: %v", err)
	}
	echoed, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		fail("POST body: %v", err)
	}
	got := sha256.Sum256(echoed)
	result["postSent"] = hex.EncodeToString(sent[:])
	result["postEchoed"] = hex.EncodeToString(got[:])
	result["postTransferEncoding"] = res.TransferEncoding

	// Keep-alive: sequential requests reuse the idle connection (one stream).
	var reused, fresh int32
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if info.Reused {
			atomic.AddInt32(&reused, 1)
		} else {
			atomic.AddInt32(&fresh, 1)
		}
	}}
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://device.local/n/%d", i), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		res, err := client.Do(req)
		if err != nil {
			fail("keep-alive GET %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	result["reused"] = reused
	result["fresh"] = fresh

	// A handler failure is a clean 500.
	res, err = client.Get("http://device.local/throw")
	if err != nil {
		fail("GET /throw: %v", err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	result["throwStatus"] = res.StatusCode
	result["throwBody"] = string(body)

	emit(result)
	session.Close()
}

// runDevice is a Go device serving net/http handlers on the streams the server opens.
func runDevice(url string) {
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		fail("dial: %v", err)
	}
	session, err := yamux.Server(&wsConn{ws: ws}, nil)
	if err != nil {
		fail("yamux server: %v", err)
	}
	var conns int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from go, host=%s path=%s", r.Host, r.URL.Path)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		flusher := w.(http.Flusher)
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(w, "tick%d;", i)
			flusher.Flush()
			time.Sleep(20 * time.Millisecond)
		}
	})
	mux.HandleFunc("/conns", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d", atomic.LoadInt32(&conns))
	})
	server := &http.Server{
		Handler: mux,
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				atomic.AddInt32(&conns, 1)
			}
		},
	}
	emit(map[string]interface{}{"event": "serving"})
	server.Serve(session)
	// The server closed the session: done.
}
